"""The SalesNexus call-v1 emulator: batched calls, sessions, paged reads and imports.

One HTTP request carries a JSON array of up to 25 calls; every call gets its own result or error,
in order, and one failed call never fails its neighbours (see the contract, "SalesNexus").
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from etl.sandbox.base import Emulator, json_response
from etl.sandbox.config import SandboxConfig
from etl.sandbox.salesnexus_store import MAX_VALUE_LENGTH, EntryError, SalesNexusStore

MAX_CALLS_PER_REQUEST = 25
MAX_PAGE_SIZE = 1000
MAX_IMPORT_ENTRIES = 1000
DEFAULT_PAGE_SIZE = 50

WRITE_FUNCTIONS = frozenset(
    {
        "create-contact",
        "update-contact",
        "import-contacts",
        "create-activity",
        "complete-activity",
        "update-activity",
        "create-sales-opp",
        "create-note",
        "add-to-campaign",
    }
)
ACTIVITY_TYPES = ("call", "meeting", "todo")
SALES_STATUSES = ("0", "1", "2")


@dataclass(frozen=True)
class SalesNexusCredentials:
    email: str
    password: str
    permanent_token: str

    def __repr__(self) -> str:  # never show the secrets
        return f"SalesNexusCredentials(email={self.email!r}, password=***, permanent_token=***)"


class CallError(Exception):
    """Ends one call with ``{"error": {"code", "message"}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Session:
    user_id: str
    expires_at: float | None  # monotonic; None never expires


Params = dict[str, Any]
Function = Callable[[Params, _Session | None], Any]


class SalesNexusEmulator(Emulator):
    name = "salesnexus"
    api_path = "/api/call-v1"

    def __init__(
        self,
        config: SandboxConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        email: str = "demo@sandbox.example",
        password: str = "sandbox-password",
        permanent_token: str = "sandbox-permanent-token",
    ) -> None:
        super().__init__(config, host=host, port=port)
        self.credentials = SalesNexusCredentials(email, password, permanent_token)
        self.store = SalesNexusStore(config, owner_email=email)
        self._sessions: dict[str, _Session] = {}
        self._functions: dict[str, Function] = {
            "greet": self._greet,
            "echo": self._echo,
            "get-login-token": self._get_login_token,
            "get-all-fields": self._authed(self._get_all_fields),
            "get-user-layouts": self._authed(self._get_user_layouts),
            "get-users": self._authed(self._get_users),
            "get-contacts": self._authed(self._get_contacts),
            "get-activities": self._authed(self._get_activities),
            "get-sales": self._authed(self._get_sales),
            "get-contact-info": self._authed(self._get_contact_info),
            "get-notes-for-contact": self._authed(self._get_notes_for_contact),
            "get-sales-for-contact": self._authed(self._get_sales_for_contact),
            "create-contact": self._authed(self._create_contact),
            "update-contact": self._authed(self._update_contact),
            "import-contacts": self._authed(self._import_contacts),
            "create-activity": self._authed(self._create_activity),
            "complete-activity": self._authed(self._complete_activity),
            "update-activity": self._authed(self._update_activity),
            "get-activity-info": self._authed(self._get_activity_info),
            "get-campaigns": self._authed(self._get_campaigns),
            "add-to-campaign": self._authed(self._add_to_campaign),
            "create-sales-opp": self._authed(self._create_sales_opp),
            "create-note": self._authed(self._create_note),
        }

    # -- Emulator hooks --------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.api_path, self._handle)

    def rate_limit_body(self) -> Any:
        return {"error": {"code": "rate-limit-exceeded", "message": "Rate limit exceeded"}}

    def reseed(self) -> None:
        self.store = SalesNexusStore(self.config, owner_email=self.credentials.email)
        self._sessions.clear()

    def expire_tokens(self) -> None:
        """Invalidate every temporary login token issued so far (the permanent one stays)."""
        self._sessions.clear()

    # -- transport ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            calls = json.loads(raw)
        except ValueError:
            calls = None
        if not isinstance(calls, list):
            return _request_error(
                400, "invalid-parameter", "The body must be a JSON array of calls"
            )
        self.stats.calls_per_request[len(calls)] += 1
        if len(calls) > MAX_CALLS_PER_REQUEST:
            return _request_error(
                413,
                "limit-exceeded",
                f"At most {MAX_CALLS_PER_REQUEST} calls per request, got {len(calls)}",
            )
        return json_response([self._run_call(call) for call in calls])

    def _run_call(self, call: Any) -> dict[str, Any]:
        if not isinstance(call, dict):
            return _call_error(None, None, "invalid-parameter", "A call must be a JSON object")
        request_id = call.get("request-id")
        name = call.get("function")
        if not isinstance(name, str):
            return _call_error(request_id, name, "invalid-parameter", "Missing 'function'")
        self.stats.calls[name] += 1
        function = self._functions.get(name)
        if function is None:
            return _call_error(request_id, name, "invalid-parameter", f"Unknown function {name!r}")
        if name in WRITE_FUNCTIONS:
            self.stats.writes += 1
        params = call.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _call_error(
                request_id, name, "invalid-parameter", "'parameters' must be a JSON object"
            )
        if self.chance(self.config.faults.call_error):
            self.stats.faults["call_error"] += 1
            return _call_error(request_id, name, "internal-error", "Internal error")
        try:
            result = function(params, None)
        except CallError as exc:
            return _call_error(request_id, name, exc.code, exc.message)
        return {"request-id": request_id, "function": name, "result": result}

    # -- sessions ----------------------------------------------------------------------------
    def _authed(self, function: Function) -> Function:
        def wrapper(params: Params, _: _Session | None) -> Any:
            return function(params, self._session(params))

        return wrapper

    def _session(self, params: Params) -> _Session:
        token = params.get("login-token")
        if not isinstance(token, str) or not token:
            raise CallError("invalid-login-token", "A login token is required")
        if token == self.credentials.permanent_token:
            return _Session(user_id="1", expires_at=None)
        session = self._sessions.get(token)
        if session is None:
            raise CallError("invalid-login-token", "The login token is not valid")
        if session.expires_at is not None and time.monotonic() >= session.expires_at:
            del self._sessions[token]
            raise CallError("invalid-login-token", "The login token has expired")
        return session

    def _manager_email(self, session: _Session) -> str:
        user = self.store.user(session.user_id)
        return user["email"] if user else self.credentials.email

    # -- functions: general ------------------------------------------------------------------
    def _greet(self, params: Params, _: _Session | None) -> Any:
        return "Hello, World!"

    def _echo(self, params: Params, _: _Session | None) -> Any:
        return params.get("data")

    def _get_login_token(self, params: Params, _: _Session | None) -> Any:
        email = _str(params, "email-address")
        password = _str(params, "password")
        creds = self.credentials
        if email.strip().lower() != creds.email.lower() or password != creds.password:
            raise CallError("invalid-parameter", "Invalid email address or password")
        token = str(uuid.uuid4())
        ttl = self.config.token_ttl
        self._sessions[token] = _Session(user_id="1", expires_at=time.monotonic() + ttl)
        self.stats.logins += 1
        return {"login-token": token, "expires-in": int(ttl) if float(ttl).is_integer() else ttl}

    def _get_all_fields(self, params: Params, session: _Session) -> Any:
        return self.store.fields_json()

    def _get_user_layouts(self, params: Params, session: _Session) -> Any:
        store = self.store
        layouts = []
        for number, table in enumerate(("contact", "sales", "activity", "note"), start=1):
            layouts.append(
                {
                    "layout-id": str(number),
                    "name": f"Default {table} layout",
                    "type": table,
                    "user-id": session.user_id,
                    "default": True,
                    "standard": True,
                    "fields": [f.id for f in store.fields if f.table == table],
                }
            )
        return layouts

    def _get_users(self, params: Params, session: _Session) -> Any:
        return [dict(u) for u in self.store.users]

    def _get_campaigns(self, params: Params, session: _Session) -> Any:
        return [
            {"campaign-id": c["campaign-id"], "name": c["name"], "size": len(c["contact-ids"])}
            for c in self.store.campaigns.values()
        ]

    def _add_to_campaign(self, params: Params, session: _Session) -> Any:
        campaign = self.store.campaigns.get(_str(params, "campaign-id"))
        if campaign is None:
            raise CallError("not-found", "No campaign with that id")
        ids = params.get("contact-ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CallError("invalid-parameter", "'contact-ids' must be a list of contact ids")
        missing = [i for i in ids if i not in self.store.contacts]
        if missing:
            raise CallError("not-found", f"No contact with id {missing[0]}")
        for contact_id in ids:
            if contact_id not in campaign["contact-ids"]:
                campaign["contact-ids"].append(contact_id)
        return {"campaign-id": campaign["campaign-id"], "added": len(ids)}

    # -- functions: paged reads --------------------------------------------------------------
    def _page(
        self, function: str, params: Params, listing: Callable[[str], list[str]]
    ) -> list[str]:
        filter_value = _str(params, "filter-value", "")
        start_after = _int(params, "start-after", "0")
        page_size = _int(params, "page-size", str(DEFAULT_PAGE_SIZE))
        self.stats.record_batch(function, page_size)
        if start_after < 0:
            raise CallError("invalid-parameter", "'start-after' must not be negative")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise CallError("limit-exceeded", f"'page-size' must be between 1 and {MAX_PAGE_SIZE}")
        return listing(filter_value)[start_after : start_after + page_size]

    def _get_contacts(self, params: Params, session: _Session) -> Any:
        store = self.store
        ids = self._page("get-contacts", params, lambda fv: store.listing("contacts", fv))
        return {"contact-ids": ids, "contacts": [dict(store.contacts[i]) for i in ids]}

    def _get_activities(self, params: Params, session: _Session) -> Any:
        # The reference defaults ``user-id`` to the session's user; the sandbox lists everyone's
        # activities unless a user is named, so an export sees them all.
        user_id = _str(params, "user-id", "")
        store = self.store

        def listing(filter_value: str) -> list[str]:
            ids = store.listing("activities", filter_value)
            if not user_id:
                return ids
            return [i for i in ids if store.activities[i]["schedule-for"] == user_id]

        ids = self._page("get-activities", params, listing)
        return {"activity-ids": ids, "activities": [dict(store.activities[i]) for i in ids]}

    def _get_sales(self, params: Params, session: _Session) -> Any:
        store = self.store
        ids = self._page("get-sales", params, lambda fv: store.listing("sales", fv))
        return {"sales-ids": ids, "sales": [dict(store.sales[i]) for i in ids]}

    # -- functions: single records -----------------------------------------------------------
    def _contact_id(self, params: Params, name: str = "contact-id") -> str:
        contact_id = _str(params, name)
        if contact_id not in self.store.contacts:
            raise CallError("not-found", f"No contact with id {contact_id!r}")
        return contact_id

    def _get_contact_info(self, params: Params, session: _Session) -> Any:
        contact_id = self._contact_id(params)
        return {"contact-ids": [contact_id], "contacts": [dict(self.store.contacts[contact_id])]}

    def _get_notes_for_contact(self, params: Params, session: _Session) -> Any:
        ids = self.store.notes_for_contact(self._contact_id(params))
        return {"note-ids": ids, "notes": [dict(self.store.notes[i]) for i in ids]}

    def _get_sales_for_contact(self, params: Params, session: _Session) -> Any:
        ids = self.store.sales_for_contact(self._contact_id(params))
        return {"sales-ids": ids, "sales": [dict(self.store.sales[i]) for i in ids]}

    def _get_activity_info(self, params: Params, session: _Session) -> Any:
        activity_id = self._activity_id(params)
        activity = dict(self.store.activities[activity_id])
        return {"activity-ids": [activity_id], "activities": [activity]}

    # -- functions: contact writes -----------------------------------------------------------
    def _contact_values(self, params: Params, name: str) -> dict[str, str]:
        try:
            return self.store.validate_contact_values(_object(params, name))
        except EntryError as exc:
            raise CallError("invalid-parameter", str(exc)) from None

    def _create_contact(self, params: Params, session: _Session) -> Any:
        values = self._contact_values(params, "contact-field-data")
        _, ids = self.store.upsert(
            values,
            None,
            create_if_not_updated=True,
            match_nulls=False,
            manager=self._manager_email(session),
        )
        return ids[0]

    def _update_contact(self, params: Params, session: _Session) -> Any:
        match_by = self._contact_values(params, "match-by-field-data")
        values = self._contact_values(params, "contact-field-data")
        status, ids = self.store.upsert(
            values,
            match_by,
            create_if_not_updated=_bool(params, "create-if-not-updated", "false"),
            match_nulls=_bool(params, "match-nulls", "true"),
            manager=self._manager_email(session),
        )
        return {"status": status, "contact-ids": ids}

    def _import_contacts(self, params: Params, session: _Session) -> Any:
        raw = params.get("contacts")
        if not isinstance(raw, str):
            raise CallError("invalid-parameter", "'contacts' must be a string holding a JSON array")
        try:
            entries = json.loads(raw)
        except ValueError:
            raise CallError("invalid-parameter", "'contacts' is not valid JSON") from None
        if not isinstance(entries, list):
            raise CallError("invalid-parameter", "'contacts' must hold a JSON array")
        create = _bool(params, "create-if-not-updated", "false")
        match_nulls = _bool(params, "match-nulls", "true")
        self.stats.record_batch("import-contacts", len(entries))
        if len(entries) > MAX_IMPORT_ENTRIES:
            raise CallError(
                "limit-exceeded",
                f"'contacts' holds {len(entries)} entries, at most {MAX_IMPORT_ENTRIES} allowed",
            )
        return self.store.import_contacts(
            entries,
            create_if_not_updated=create,
            match_nulls=match_nulls,
            manager=self._manager_email(session),
            row_fails=self._row_fails,
        )

    def _row_fails(self) -> bool:
        if self.chance(self.config.faults.row_failure):
            self.stats.faults["row_failure"] += 1
            return True
        return False

    # -- functions: activities ---------------------------------------------------------------
    def _activity_id(self, params: Params) -> str:
        activity_id = _str(params, "activity-id")
        if activity_id not in self.store.activities:
            raise CallError("not-found", f"No activity with id {activity_id!r}")
        return activity_id

    def _activity_values(self, params: Params, *, creating: bool) -> dict[str, str]:
        """The named activity parameters present in ``params``, validated."""
        values: dict[str, str] = {}
        names = ("schedule-with", "schedule-for", "regarding", "details", "color")
        names += ("start-time", "end-time", "type", "timeless", "result")
        for name in names:
            if name in params:
                values[name] = _str(params, name)
        if creating:
            values.setdefault("timeless", "false")
            values.setdefault("type", "todo")
        contact_id = values.get("schedule-with")
        if contact_id and contact_id not in self.store.contacts:
            raise CallError("not-found", f"No contact with id {contact_id!r}")
        if creating and not contact_id:
            raise CallError("invalid-parameter", "'schedule-with' must name a contact")
        user_id = values.get("schedule-for")
        if user_id and self.store.user(user_id) is None:
            raise CallError("invalid-parameter", f"No user with id {user_id!r}")
        if len(values.get("regarding", "")) > MAX_VALUE_LENGTH:
            raise CallError(
                "invalid-parameter", f"'regarding' is longer than {MAX_VALUE_LENGTH} characters"
            )
        color = values.get("color", "")
        if color and (len(color) != 6 or any(c not in "0123456789abcdefABCDEF" for c in color)):
            raise CallError("invalid-parameter", "'color' must be six hex digits")
        if values.get("type", "call") not in ACTIVITY_TYPES:
            raise CallError("invalid-parameter", "'type' must be call, meeting or todo")
        if "timeless" in values:
            values["timeless"] = "true" if _bool(values, "timeless") else "false"
        for name in ("start-time", "end-time"):
            if values.get(name):
                values[name] = _iso_time(values[name], name)
        return values

    def _create_activity(self, params: Params, session: _Session) -> Any:
        values = self._activity_values(params, creating=True)
        if not values.get("schedule-for"):
            values["schedule-for"] = session.user_id
        values.pop("result", None)
        return self.store.add_activity(values)

    def _update_activity(self, params: Params, session: _Session) -> Any:
        activity_id = self._activity_id(params)
        values = self._activity_values(params, creating=False)
        values.pop("result", None)
        self.store.update_activity(activity_id, values)
        return activity_id

    def _complete_activity(self, params: Params, session: _Session) -> Any:
        activity_id = self._activity_id(params)
        values = self._activity_values(params, creating=False)
        values["completed"] = "true"
        self.store.update_activity(activity_id, values)
        activity = self.store.activities[activity_id]
        note_id = None
        if activity["schedule-with"] in self.store.contacts:
            text = f"{activity['regarding']}: {activity['result']}".strip(": ")
            note_id = self.store.add_note(activity["schedule-with"], text, "Activity")
        return {"activity-id": activity_id, "note-id": note_id}

    # -- functions: sales and notes ----------------------------------------------------------
    def _create_sales_opp(self, params: Params, session: _Session) -> Any:
        data = _object(params, "sales-field-data")
        store = self.store
        values: dict[str, str] = {}
        for key, value in data.items():
            field = store.field("sales", key)
            if field is None:
                raise CallError("invalid-parameter", f"Unknown sales field id {key}")
            if not isinstance(value, str):
                raise CallError("invalid-parameter", f"The value of field {key} must be a string")
            if len(value) > MAX_VALUE_LENGTH:
                raise CallError(
                    "invalid-parameter",
                    f"The value of field {key} ({field.name}) is longer than "
                    f"{MAX_VALUE_LENGTH} characters",
                )
            values[str(field.id)] = value
        contact_key = str(store.field_id("sales", "Contact ID"))
        if values.get(contact_key, "") not in store.contacts:
            raise CallError("not-found", f"No contact with id {values.get(contact_key)!r}")
        status_key = str(store.field_id("sales", "Status"))
        values.setdefault(status_key, "0")
        if values[status_key] not in SALES_STATUSES:
            raise CallError("invalid-parameter", "Status must be 0 (open), 1 (won) or 2 (lost)")
        amount_key = str(store.field_id("sales", "Amount"))
        if values.get(amount_key):
            try:
                float(values[amount_key])
            except ValueError:
                raise CallError("invalid-parameter", "Amount must be a decimal number") from None
        return store.add_sale(values)

    def _create_note(self, params: Params, session: _Session) -> Any:
        contact_id = self._contact_id(params)
        details = _str(params, "details", "")
        note_type = _str(params, "type", "") or "General"
        user_id = _str(params, "user-id", "")
        if user_id and self.store.user(user_id) is None:
            raise CallError("invalid-parameter", f"No user with id {user_id!r}")
        return self.store.add_note(contact_id, details, note_type)


# -- parameter helpers: every scalar parameter is a string, as in the reference -------------
def _str(params: Params, name: str, default: str | None = None) -> str:
    value = params.get(name)
    if value is None:
        if default is None:
            raise CallError("invalid-parameter", f"Missing parameter {name!r}")
        return default
    if not isinstance(value, str):
        raise CallError("invalid-parameter", f"Parameter {name!r} must be a string")
    return value


def _int(params: Params, name: str, default: str | None = None) -> int:
    text = _str(params, name, default)
    try:
        return int(text.strip())
    except ValueError:
        raise CallError("invalid-parameter", f"Parameter {name!r} must be an integer") from None


def _bool(params: Params, name: str, default: str | None = None) -> bool:
    text = _str(params, name, default).strip().lower()
    if text not in ("true", "false"):
        raise CallError("invalid-parameter", f"Parameter {name!r} must be 'true' or 'false'")
    return text == "true"


def _object(params: Params, name: str) -> dict[str, Any]:
    """A JSON object parameter, also accepted as a string holding one."""
    value = params.get(name)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise CallError("invalid-parameter", f"Parameter {name!r} is not valid JSON") from None
    if not isinstance(value, dict):
        raise CallError("invalid-parameter", f"Parameter {name!r} must be a JSON object")
    return value


def _iso_time(text: str, name: str) -> str:
    """Normalise an ISO 8601 time to UTC ``YYYY-MM-DDTHH:MM:SSZ``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CallError(
            "invalid-parameter", f"Parameter {name!r} is not an ISO 8601 time"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _call_error(request_id: Any, function: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "request-id": request_id,
        "function": function,
        "error": {"code": code, "message": message},
    }


def _request_error(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status)
