"""SALESmanago REST client.

Every assumption about SALESmanago's responses lives in :func:`parse_response` and the few
methods below it, so that adapting to a real deviation from the contract is a one-file change.
Callers never think about limits: id lists are split into chunks of 50 and upserts into chunks of
1000, sent concurrently under the account's pacing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from etl.clients.config import SalesManagoConfig
from etl.clients.errors import (
    APIError,
    AuthenticationError,
    LimitExceededError,
    RateLimitedError,
    TransientError,
)
from etl.clients.results import (
    BatchOutcomes,
    ContactPage,
    ContactRef,
    RowOutcome,
    TransportStats,
)
from etl.clients.retry import parse_retry_after
from etl.clients.transport import HttpTransport, RawResponse

MAX_IDS_PER_CALL = 50
MAX_PAGE_SIZE = 1000
MAX_UPSERTS_PER_CALL = 1000

T = TypeVar("T")


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def parse_response(raw: RawResponse) -> dict[str, Any]:
    """Map one HTTP answer onto the contract: a value, a transient error, or a final error."""
    if raw.status == 429:
        raise RateLimitedError(
            "HTTP 429 rate limit exceeded",
            retry_after=parse_retry_after(raw.headers.get("Retry-After")),
        )
    if raw.status >= 500:
        raise TransientError(f"HTTP {raw.status} server error")
    try:
        payload = orjson.loads(raw.body)
    except ValueError:
        if raw.status >= 400:
            raise APIError(f"HTTP {raw.status} with a body that is not JSON") from None
        raise TransientError("response body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise TransientError("response JSON is not an object")
    messages = payload.get("message") or []
    text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
    if raw.status == 400:
        raise LimitExceededError(f"SALESmanago rejected the call: {text or 'HTTP 400'}")
    if raw.status >= 400:
        raise APIError(f"SALESmanago HTTP {raw.status}: {text}")
    if payload.get("success") is False:
        if "authentication failed" in text.lower():
            raise AuthenticationError(
                "SALESmanago authentication failed: check clientId, apiKey and apiSecret"
            )
        raise APIError(f"SALESmanago error: {text or 'success is false'}")
    return payload


class SalesManagoClient:
    """Async SALESmanago client: ``async with SalesManagoClient(config) as sm: ...``."""

    def __init__(self, config: SalesManagoConfig) -> None:
        self.config = config
        self._transport = HttpTransport(
            name="salesmanago",
            pacing=config.pacing,
            retry=config.retry,
            timeouts=config.timeouts,
        )
        self._base = config.base_url.rstrip("/")
        secret = config.api_secret.get_secret_value()
        api_key = config.api_key.get_secret_value()
        self._sha = hashlib.sha1((api_key + config.client_id + secret).encode()).hexdigest()

    def __repr__(self) -> str:
        return f"SalesManagoClient(base_url={self._base!r}, client_id={self.config.client_id!r})"

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats

    async def __aenter__(self) -> SalesManagoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- the one way out --------------------------------------------------------------------
    async def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        """POST one method with the authentication block; returns the parsed envelope.

        ``idempotent=False`` marks a write that must not be repeated blindly (see
        :class:`~etl.clients.errors.AmbiguousWriteError`)."""
        return await self.call_with(path, body, parse_response, idempotent=idempotent)

    async def call_with(
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[RawResponse], T],
        *,
        idempotent: bool = True,
    ) -> T:
        """:meth:`call` with a parser of its own (e.g. a page decoded straight to Arrow), which
        must raise as :func:`parse_response` does; large answers are parsed in a worker thread."""
        data = orjson.dumps({**self._auth(), **body})
        self._transport.stats.calls += 1
        return await self._transport.post(
            f"{self._base}/{path}", data, parse, what=path, idempotent=idempotent
        )

    def _auth(self) -> dict[str, Any]:
        """The authentication block every call starts with (a fresh ``requestTime``)."""
        return {
            "clientId": self.config.client_id,
            "apiKey": self.config.api_key.get_secret_value(),
            "requestTime": int(time.time() * 1000),
            "sha": self._sha,
        }

    # -- reads ------------------------------------------------------------------------------
    async def paginated_contacts(self, page: int, size: int = MAX_PAGE_SIZE) -> ContactPage:
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}, got {size}")
        answer = await self.call(
            "contact/paginatedContactList", {"owner": self.config.owner, "page": page, "size": size}
        )
        contacts = answer.get("contacts") or []
        return ContactPage(page=page, contacts=contacts, has_more=bool(answer.get("hasMore")))

    async def _by_identifiers(
        self, path: str, key: str, identifiers: Sequence[str]
    ) -> list[dict[str, Any]]:
        chunks = chunked(list(identifiers), MAX_IDS_PER_CALL)
        answers = await asyncio.gather(
            *(self.call(path, {"owner": self.config.owner, key: list(chunk)}) for chunk in chunks)
        )
        return [contact for answer in answers for contact in answer.get("contacts") or []]

    async def list_by_id(self, contact_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Full contacts for any number of ids (chunks of 50); unknown ids are left out."""
        return await self._by_identifiers("contact/listById", "contactId", contact_ids)

    async def list_by_email(self, emails: Sequence[str]) -> list[dict[str, Any]]:
        return await self._by_identifiers("contact/list", "email", emails)

    async def basic_by_id(self, contact_ids: Sequence[str]) -> list[dict[str, Any]]:
        return await self._by_identifiers("contact/basicById", "contactId", contact_ids)

    async def _changed(self, path: str, key: str, start_ms: int, end_ms: int) -> list[ContactRef]:
        answer = await self.call(path, {"owner": self.config.owner, "from": start_ms, "to": end_ms})
        return [ContactRef(str(item["id"]), item.get("email")) for item in answer.get(key) or []]

    async def modified_contacts(self, start_ms: int, end_ms: int) -> list[ContactRef]:
        """Contacts whose ``modifiedOn`` lies in ``[start_ms, end_ms)``."""
        return await self._changed("contact/modifiedContacts", "modifiedContacts", start_ms, end_ms)

    async def created_contacts(self, start_ms: int, end_ms: int) -> list[ContactRef]:
        return await self._changed("contact/createdContacts", "createdContacts", start_ms, end_ms)

    # -- writes -----------------------------------------------------------------------------
    async def batch_upsert(
        self,
        entries: Sequence[dict[str, Any]],
        *,
        use_double_opt_in: bool = False,
        lang: str | None = None,
    ) -> list[RowOutcome]:
        """Upsert any number of ``upsertDetails`` entries (chunks of 1000, sent concurrently).

        Returns one outcome per entry, in input order. A row succeeded when its email is in the
        answer's ``contactIds`` (the contract); ``failedContacts`` supplies the reason when not.
        Retrying a chunk after an ambiguous failure is safe: the upsert matches on email.
        """
        starts = range(0, len(entries), MAX_UPSERTS_PER_CALL)
        chunks = [entries[start : start + MAX_UPSERTS_PER_CALL] for start in starts]
        answers = await asyncio.gather(
            *(self._upsert_chunk(chunk, use_double_opt_in, lang) for chunk in chunks)
        )
        outcomes: list[RowOutcome] = []
        for start, chunk, answer in zip(starts, chunks, answers, strict=True):
            outcomes.extend(_upsert_outcomes(start, [_entry_email(e) for e in chunk], answer))
        return outcomes

    async def batch_upsert_encoded(
        self,
        entries: Sequence[str],
        emails: Sequence[str | None],
        *,
        use_double_opt_in: bool = False,
        lang: str | None = None,
    ) -> BatchOutcomes:
        """:meth:`batch_upsert` for entries already encoded as JSON objects (e.g. by
        :func:`etl.load.contact_payloads.salesmanago_entries`); ``emails[i]`` is entry ``i``'s
        ``contact.email``, by which the answer confirms it. Same chunks and outcomes, returned
        column-wise."""
        if len(entries) != len(emails):
            raise ValueError(f"{len(entries)} entries but {len(emails)} emails")
        starts = range(0, len(entries), MAX_UPSERTS_PER_CALL)
        answers = await asyncio.gather(
            *(
                self._upsert_encoded_chunk(
                    entries[start : start + MAX_UPSERTS_PER_CALL], use_double_opt_in, lang
                )
                for start in starts
            )
        )
        ids: list[str | None] = []
        failures: dict[int, str] = {}
        for start, answer in zip(starts, answers, strict=True):
            chunk_emails = emails[start : start + MAX_UPSERTS_PER_CALL]
            chunk_ids, chunk_failures = _upsert_columns(chunk_emails, answer)
            ids.extend(chunk_ids)
            failures.update((start + i, reason) for i, reason in chunk_failures.items())
        statuses = ["upserted"] * len(ids)
        for index in failures:
            statuses[index] = "failed"
        return BatchOutcomes(ids, statuses, failures)

    async def _upsert_encoded_chunk(
        self, entries: Sequence[str], use_double_opt_in: bool, lang: str | None
    ) -> dict[str, Any]:
        """One ``contact/batchupsert`` request spliced from encoded parts (the authentication
        block as :meth:`call` writes it, then ``upsertDetails`` last)."""
        body: dict[str, Any] = {
            **self._auth(),
            "owner": self.config.owner,
            "useApiDoubleOptIn": use_double_opt_in,
        }
        if lang:
            body["lang"] = lang
        head = orjson.dumps(body)[:-1]  # without its closing brace
        data = b"".join((head, b',"upsertDetails":[', ",".join(entries).encode(), b"]}"))
        path = "contact/batchupsert"
        self._transport.stats.calls += 1
        return await self._transport.post(
            f"{self._base}/{path}", data, parse_response, what=path, idempotent=True
        )

    async def _upsert_chunk(
        self, chunk: Sequence[dict[str, Any]], use_double_opt_in: bool, lang: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "owner": self.config.owner,
            "upsertDetails": list(chunk),
            "useApiDoubleOptIn": use_double_opt_in,
        }
        if lang:
            body["lang"] = lang
        return await self.call("contact/batchupsert", body)

    async def upsert(self, entry: dict[str, Any]) -> str:
        """Upsert one contact (same entry shape as ``batch_upsert``); returns its id."""
        answer = await self.call("contact/upsert", {"owner": self.config.owner, **entry})
        return str(answer["contactId"])

    async def add_ext_event(
        self, event: dict[str, Any], *, email: str | None = None, contact_id: str | None = None
    ) -> str:
        """Record an external event (e.g. a ``PURCHASE``) for a contact; returns its ``eventId``."""
        if (email is None) == (contact_id is None):
            raise ValueError("give exactly one of email and contact_id")
        who = {"email": email} if email is not None else {"contactId": contact_id}
        answer = await self.call(
            "contact/addContactExtEvent",
            {"owner": self.config.owner, **who, "contactEvent": event},
            idempotent=False,  # every call adds an event
        )
        return str(answer["eventId"])

    async def update_task(self, task: dict[str, Any], *, finished: bool = False) -> str:
        """Add or update (``finished=False``) or delete (``True``) a contact's task."""
        answer = await self.call(
            "contact/updateTask", {"finished": finished, "smContactTaskReq": task}
        )
        return str(answer.get("taskId") or task.get("id") or "")

    async def delete_contact(self, email: str, *, permanently: bool = False) -> None:
        await self.call(
            "contact/delete",
            {"owner": self.config.owner, "email": email, "permanently": permanently},
        )


NOT_CONFIRMED = "not confirmed by SALESmanago (absent from contactIds)"


def _upsert_outcomes(
    start: int, emails: Sequence[str | None], answer: dict[str, Any]
) -> list[RowOutcome]:
    """One outcome per entry, in order; ``emails`` are the entries' ``contact.email``."""
    ids, failures = _upsert_columns(emails, answer)
    return [
        RowOutcome(start + offset, "upserted", contact_id)
        if contact_id is not None
        else RowOutcome(start + offset, "failed", None, failures[offset])
        for offset, contact_id in enumerate(ids)
    ]


def _upsert_columns(
    emails: Sequence[str | None], answer: dict[str, Any]
) -> tuple[list[str | None], dict[int, str]]:
    """Each entry's contact id (``None`` when it failed) and each failed entry's reason, by
    its index in the chunk. A row went in when its email is in ``contactIds`` (the contract);
    ``failedContacts`` supplies the reason when not."""
    confirmed = answer.get("contactIds") or {}
    ids_by_email = {str(email).lower(): str(cid) for email, cid in confirmed.items()}
    lookup = ids_by_email.get
    ids = [lookup(email.lower()) if email else None for email in emails]
    if None not in ids:  # the usual answer: every row went in
        return ids, {}
    reasons: dict[int, str] = {}
    for failure in answer.get("failedContacts") or []:
        if isinstance(failure, dict) and isinstance(failure.get("index"), int):
            reasons[failure["index"]] = str(failure.get("message") or "failed")
    failures = {i: reasons.get(i, NOT_CONFIRMED) for i, cid in enumerate(ids) if cid is None}
    return ids, failures


def _entry_email(entry: dict[str, Any]) -> str | None:
    contact = entry.get("contact") or {}
    email = contact.get("email") if isinstance(contact, dict) else None
    return str(email) if email else None
