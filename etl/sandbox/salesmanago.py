"""The SALESmanago emulator: the contract's methods over real HTTP, backed by SalesManagoStore."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from etl.sandbox.base import Emulator, json_response
from etl.sandbox.config import SandboxConfig
from etl.sandbox.salesmanago_store import (
    FREEZE_FROM_CONTACTS,
    LimitError,
    SalesManagoStore,
    check_event,
    check_task,
    now_ms,
    paused_gc,
)

MAX_IDENTIFIERS = 50
MAX_PAGE_SIZE = 1000
MAX_UPSERT_DETAILS = 1000
ROW_FAILURE_MESSAGE = "Internal error while saving the contact"

Payload = dict[str, Any]


@dataclass(frozen=True)
class SalesManagoCredentials:
    client_id: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    owner: str

    @property
    def sha(self) -> str:
        """What every call carries instead of the secret: sha1(apiKey + clientId + apiSecret)."""
        raw = self.api_key + self.client_id + self.api_secret
        return hashlib.sha1(raw.encode()).hexdigest()


class ApiError(Exception):
    """A failed call: HTTP 400 for a limit or a malformed request, else 200 ``success: false``."""

    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _limit(message: str) -> ApiError:
    return ApiError(message, status=400)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def basic_shape(contact: dict[str, Any]) -> dict[str, Any]:
    """The ``contact/basic`` record: ``contactId`` instead of ``id``, no nested lists."""
    visits = contact["contactVisits"]
    return {
        "name": contact["name"],
        "email": contact["email"],
        "phone": contact["phone"],
        "fax": contact["fax"],
        "score": contact["score"],
        "state": contact["state"],
        "optedOut": contact["optedOut"],
        "optedOutPhone": contact["optedOutPhone"],
        "deleted": contact["deleted"],
        "invalid": contact["invalid"],
        "company": contact["company"],
        "externalId": contact["externalId"],
        "address": contact["address"],
        "contactId": contact["id"],
        "birthdayYear": contact["birthdayYear"],
        "birthdayMonth": contact["birthdayMonth"],
        "birthdayDay": contact["birthdayDay"],
        "modifiedOn": contact["modifiedOn"],
        "createdOn": contact["createdOn"],
        "lastVisit": max((v["time"] for v in visits), default=None),
    }


class SalesManagoEmulator(Emulator):
    name = "salesmanago"
    api_path = "/api"

    def __init__(
        self,
        config: SandboxConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "sandbox-client",
        api_key: str = "sandbox-api-key",
        api_secret: str = "sandbox-api-secret",
        owner: str = "owner@sandbox.example",
    ) -> None:
        super().__init__(config, host=host, port=port)
        self.credentials = SalesManagoCredentials(client_id, api_key, api_secret, owner)
        self.store = SalesManagoStore(config, owner)
        self._sha = self.credentials.sha
        self._methods: dict[str, Callable[[Payload], Payload]] = {
            "contact/upsert": self._upsert,
            "contact/insert": self._insert,
            "contact/update": self._update,
            "contact/batchupsert": self._batchupsert,
            "contact/delete": self._delete,
            "contact/hasContact": self._has_contact,
            "contact/basic": self._basic,
            "contact/basicById": self._basic_by_id,
            "contact/list": self._list,
            "contact/listById": self._list_by_id,
            "contact/listAll": self._list_all,
            "contact/listAllById": self._list_all_by_id,
            "contact/modifiedContacts": self._modified_contacts,
            "contact/createdContacts": self._created_contacts,
            "contact/paginatedContactList": self._paginated,
            "contact/addContactExtEvent": self._add_event,
            "contact/updateContactExtEvent": self._update_event,
            "contact/deleteContactExtEvent": self._delete_event,
            "contact/updateTask": self._update_task,
        }
        self._writes = frozenset(
            {
                "contact/upsert",
                "contact/insert",
                "contact/update",
                "contact/batchupsert",
                "contact/delete",
                "contact/addContactExtEvent",
                "contact/updateContactExtEvent",
                "contact/deleteContactExtEvent",
                "contact/updateTask",
            }
        )

    # -- Emulator hooks -------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.api_path + "/{path:.+}", self._dispatch)

    def rate_limit_body(self) -> Any:
        return {"success": False, "message": ["Rate limit exceeded"]}

    # -- request handling -----------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.stats.calls[path] += 1
        self.stats.calls_per_request[1] += 1
        raw = await request.read()
        # Parsing and storing allocate thousands of objects but no cycles; once the store is
        # large, a write's survivors are frozen out of later collections (see paused_gc).
        freeze = (
            self.config.owns_process
            and path in self._writes
            and len(self.store) >= FREEZE_FROM_CONTACTS
        )
        with paused_gc(freeze=freeze):
            return self._handle(path, raw)

    def _handle(self, path: str, raw: bytes) -> web.Response:
        try:
            body = _parse_json(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _failure(f"The request body is not valid JSON: {exc}", 400)
        if not isinstance(body, dict):
            return _failure("The request body must be a JSON object", 400)
        method = self._methods.get(path)
        if method is None:
            return _failure(f"Unknown method: {path}", 404)
        if not self._authenticated(body):
            return _failure("Authentication failed")
        if path in self._writes:
            self.stats.writes += 1
        try:
            payload = method(body)
        except ApiError as exc:
            return _failure(exc.message, exc.status)
        return json_response({"success": True, "message": [], **payload})

    def _authenticated(self, body: Payload) -> bool:
        creds = self.credentials
        sha = body.get("sha")
        return (
            body.get("clientId") == creds.client_id
            and body.get("apiKey") == creds.api_key
            and _is_int(body.get("requestTime"))
            and isinstance(sha, str)
            and hmac.compare_digest(sha.encode(), self._sha.encode())
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _identifiers(self, path: str, body: Payload, *keys: str) -> list[str]:
        """The identifier list of a lookup method, enforcing the 50-identifier limit."""
        key = next((k for k in keys if k in body), keys[0])
        values = body.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError(f"field '{key}' must be a list of strings")
        self.stats.record_batch(path, len(values))
        if len(values) > MAX_IDENTIFIERS:
            raise _limit(
                f"too many identifiers in '{key}': {len(values)} given, "
                f"the limit is {MAX_IDENTIFIERS} per call"
            )
        return list(dict.fromkeys(values))

    def _contacts_by_id(self, ids: list[str]) -> list[dict[str, Any]]:
        found = (self.store.get(i) for i in ids)
        return [c for c in found if c is not None]

    def _contacts_by_email(self, emails: list[str]) -> list[dict[str, Any]]:
        found = (self.store.get_by_email(e) for e in emails)
        unique = {c["id"]: c for c in found if c is not None}
        return list(unique.values())

    def _resolve_contact(self, body: Payload, email_key: str = "email") -> str:
        contact_id = body.get("contactId")
        if isinstance(contact_id, str) and contact_id:
            if self.store.get(contact_id) is None:
                raise ApiError(f"Contact not found: contactId {contact_id!r}")
            return contact_id
        email = body.get(email_key)
        if not isinstance(email, str) or not email:
            raise ApiError(f"field '{email_key}' or 'contactId' is required")
        found = self.store.id_for_email(email)
        if found is None:
            raise ApiError(f"Contact not found: {email_key} {email!r}")
        return found

    def _window(self, body: Payload) -> tuple[int, int]:
        start, end = body.get("from"), body.get("to")
        for name, value in (("from", start), ("to", end)):
            if not _is_int(value):
                raise ApiError(f"field '{name}' must be epoch milliseconds, got {value!r}")
        return start, end

    # -- contact writes ---------------------------------------------------------------------------
    def _upsert(self, body: Payload) -> Payload:
        try:
            contact_id, _ = self.store.upsert(body, body.get("owner"))
        except LimitError as exc:
            raise _limit(str(exc)) from None
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        return {"contactId": contact_id}

    def _insert(self, body: Payload) -> Payload:
        try:
            return {"contactId": self.store.insert(body, body.get("owner"))}
        except LimitError as exc:
            raise _limit(str(exc)) from None
        except ValueError as exc:
            raise ApiError(str(exc)) from None

    def _update(self, body: Payload) -> Payload:
        contact_id = self._resolve_contact(body)
        try:
            return {"contactId": self.store.update(contact_id, body, body.get("owner"))}
        except LimitError as exc:
            raise _limit(str(exc)) from None
        except ValueError as exc:
            raise ApiError(str(exc)) from None

    def _batchupsert(self, body: Payload) -> Payload:
        path = "contact/batchupsert"
        details = body.get("upsertDetails")
        if not isinstance(details, list):
            raise ApiError("field 'upsertDetails' must be a list")
        self.stats.record_batch(path, len(details))
        if len(details) > MAX_UPSERT_DETAILS:
            raise _limit(
                f"too many entries in 'upsertDetails': {len(details)} given, "
                f"the limit is {MAX_UPSERT_DETAILS} per call"
            )
        owner = body.get("owner")
        contact_ids: dict[str, str] = {}
        failed: list[Payload] = []
        validate, apply = self.store.validate_entry, self.store.apply_upsert
        row_failure = self.config.faults.row_failure
        stamp = now_ms()  # one request, one time: every contact it touches is modified then
        for index, entry in enumerate(details):
            try:
                plan = validate(entry)
            except ValueError as exc:
                failed.append({"index": index, "email": _email_of(entry), "message": str(exc)})
                continue
            email = plan["email"]  # the entry's own value, validated
            if row_failure and self.chance(row_failure):
                self.stats.faults["row_failure"] += 1
                failed.append({"index": index, "email": email, "message": ROW_FAILURE_MESSAGE})
                continue
            contact_ids[email] = apply(plan, owner, stamp)[0]
        return {"contactIds": contact_ids, "failedContacts": failed}

    def _delete(self, body: Payload) -> Payload:
        contact_id = self._resolve_contact(body)
        self.store.delete(contact_id)
        return {"contactId": contact_id}

    # -- contact reads ----------------------------------------------------------------------------
    def _has_contact(self, body: Payload) -> Payload:
        email = body.get("email")
        if not isinstance(email, str) or not email:
            raise ApiError("field 'email' is required")
        contact_id = self.store.id_for_email(email)
        return {"result": contact_id is not None, "contactId": contact_id}

    def _basic(self, body: Payload) -> Payload:
        emails = self._identifiers("contact/basic", body, "email")
        return {"contacts": [basic_shape(c) for c in self._contacts_by_email(emails)]}

    def _basic_by_id(self, body: Payload) -> Payload:
        ids = self._identifiers("contact/basicById", body, "contactId", "id")
        return {"contacts": [basic_shape(c) for c in self._contacts_by_id(ids)]}

    def _list(self, body: Payload) -> Payload:
        emails = self._identifiers("contact/list", body, "email")
        return {"contacts": self._contacts_by_email(emails)}

    def _list_by_id(self, body: Payload) -> Payload:
        ids = self._identifiers("contact/listById", body, "contactId", "id")
        return {"contacts": self._contacts_by_id(ids)}

    def _list_all(self, body: Payload) -> Payload:
        emails = self._identifiers("contact/listAll", body, "email")
        return {"contacts": self._contacts_by_email(emails)}

    def _list_all_by_id(self, body: Payload) -> Payload:
        ids = self._identifiers("contact/listAllById", body, "contactId", "id")
        return {"contacts": self._contacts_by_id(ids)}

    def _modified_contacts(self, body: Payload) -> Payload:
        start, end = self._window(body)
        found = self.store.modified_between(start, end)
        return {"modifiedContacts": [{"id": c["id"], "email": c["email"]} for c in found]}

    def _created_contacts(self, body: Payload) -> Payload:
        start, end = self._window(body)
        found = self.store.created_between(start, end)
        return {"createdContacts": [{"id": c["id"], "email": c["email"]} for c in found]}

    def _paginated(self, body: Payload) -> Payload:
        page, size = body.get("page"), body.get("size")
        if not _is_int(size):
            raise _limit(f"field 'size' must be an integer from 1 to {MAX_PAGE_SIZE}, got {size!r}")
        self.stats.record_batch("contact/paginatedContactList", size)
        if size > MAX_PAGE_SIZE:
            raise _limit(f"size {size} is over the limit of {MAX_PAGE_SIZE} contacts per page")
        if size < 1:
            raise _limit(f"size {size} is under the minimum of 1 contact per page")
        if not _is_int(page) or page < 0:
            raise _limit(f"field 'page' must be an integer from 0, got {page!r}")
        contacts, has_more = self.store.page(page, size)
        return {"contacts": contacts, "hasMore": has_more}

    # -- external events and tasks ----------------------------------------------------------------
    def _add_event(self, body: Payload) -> Payload:
        contact_id = self._resolve_contact(body)
        event = self._checked_event(body.get("contactEvent"))
        return {"eventId": self.store.add_event(contact_id, event)}

    def _update_event(self, body: Payload) -> Payload:
        event = self._checked_event(body.get("contactEvent"))
        event_id = event.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            raise ApiError("field 'eventId' is required")
        if not self.store.update_event(event_id, event):
            raise ApiError(f"Event not found: eventId {event_id!r}")
        return {"eventId": event_id}

    def _delete_event(self, body: Payload) -> Payload:
        event_id = body.get("eventId")
        if event_id is None and isinstance(body.get("contactEvent"), dict):
            event_id = body["contactEvent"].get("eventId")
        if not isinstance(event_id, str) or not event_id:
            raise ApiError("field 'eventId' is required")
        if not self.store.delete_event(event_id):
            raise ApiError(f"Event not found: eventId {event_id!r}")
        return {"result": "deleted"}

    @staticmethod
    def _checked_event(event: Any) -> dict[str, Any]:
        try:
            return check_event(event)
        except LimitError as exc:
            raise _limit(str(exc)) from None
        except ValueError as exc:
            raise ApiError(str(exc)) from None

    def _update_task(self, body: Payload) -> Payload:
        finished = body.get("finished")
        task = body.get("smContactTaskReq")
        if not isinstance(finished, bool):
            raise ApiError(f"field 'finished' must be true or false, got {finished!r}")
        if not isinstance(task, dict):
            raise ApiError("field 'smContactTaskReq' must be a JSON object")
        if finished:
            task_id = task.get("id")
            if not isinstance(task_id, str) or not task_id:
                raise ApiError("field 'id' is required to finish a task")
            if not self.store.delete_task(task_id):
                raise ApiError(f"Task not found: id {task_id!r}")
            return {"taskId": task_id}
        contact_id = self._resolve_contact(task, "contactEmail")
        try:
            checked = check_task(task)
        except LimitError as exc:
            raise _limit(str(exc)) from None
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        return {"taskId": self.store.put_task(contact_id, checked)}


def _email_of(entry: Any) -> Any:
    """The ``contact.email`` of an upsert entry as given (any type), None when absent."""
    inner = entry.get("contact") if isinstance(entry, dict) else None
    return inner.get("email") if isinstance(inner, dict) else None


def _parse_json(raw: bytes) -> Any:
    """orjson (a 1000-row upsert parses several times faster); the standard library only for
    what orjson refuses, so both the accepted input and the error message stay the same."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _failure(message: str, status: int = 200) -> web.Response:
    return json_response({"success": False, "message": [message]}, status)
