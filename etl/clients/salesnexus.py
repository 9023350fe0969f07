"""SalesNexus call-v1 client.

SalesNexus takes an array of calls per HTTP request (up to 25) and its quota counts HTTP requests,
so this client packs concurrent calls: every :meth:`SalesNexusClient.call` joins a queue, and a
small pool of senders, each waiting its turn at the account's rate limit, takes up to 25 queued
calls per request. Per-call errors come back on the individual call, never on its neighbours.

Every assumption about SalesNexus's answers lives in this module (``_parse_batch`` and
``_call_error``), so adapting to a real deviation from the contract is a one-file change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from etl.clients.config import SalesNexusConfig
from etl.clients.errors import (
    AmbiguousWriteError,
    APIError,
    AuthenticationError,
    CRMError,
    InvalidParameterError,
    LimitExceededError,
    NotFoundError,
    RateLimitedError,
    RetryBudgetExhausted,
    TransientError,
)
from etl.clients.results import RecordPage, RowOutcome, TransportStats
from etl.clients.retry import backoff_delay, parse_retry_after
from etl.clients.transport import HttpTransport, RawResponse

log = logging.getLogger("etl.clients")

MAX_CALLS_PER_REQUEST = 25
MAX_RELOGINS_PER_CALL = 3
MAX_PAGE_SIZE = 1000
MAX_IMPORT_ROWS = 1000

# Calls that create a record each time they run: never repeated blindly after an ambiguous failure.
NOT_IDEMPOTENT = frozenset(
    {"create-contact", "create-activity", "create-sales-opp", "create-note", "complete-activity"}
)

_LISTINGS = {
    "get-contacts": ("contact-ids", "contacts"),
    "get-activities": ("activity-ids", "activities"),
    "get-sales": ("sales-ids", "sales"),
}


@dataclass
class _PendingCall:
    function: str
    parameters: dict[str, Any]
    future: asyncio.Future[Any]
    idempotent: bool = True
    attempts: int = 0
    relogins: int = 0
    token_used: str | None = field(default=None, repr=False)


def _parse_batch(raw: RawResponse) -> list[dict[str, Any]]:
    """An HTTP answer to a batch: the list of per-call elements, or an error for the whole."""
    if raw.status == 429:
        raise RateLimitedError(
            "HTTP 429 rate limit exceeded",
            retry_after=parse_retry_after(raw.headers.get("Retry-After")),
        )
    if raw.status >= 500:
        raise TransientError(f"HTTP {raw.status} server error")
    if raw.status == 413:
        raise LimitExceededError("SalesNexus rejected the request: too many calls in one request")
    if raw.status >= 400:
        raise APIError(f"SalesNexus HTTP {raw.status}")
    try:
        payload = orjson.loads(raw.body)
    except ValueError:
        raise TransientError("response body is not valid JSON") from None
    if not isinstance(payload, list):
        raise TransientError("response JSON is not an array")
    return payload


def _call_error(function: str, error: dict[str, Any]) -> CRMError:
    code = str(error.get("code") or "")
    message = f"SalesNexus {function}: {error.get('message') or code or 'error'}"
    if code == "invalid-login-token":
        return AuthenticationError(message)
    if code == "limit-exceeded":
        return LimitExceededError(message)
    if code == "invalid-parameter":
        return InvalidParameterError(message, code=code)
    if code == "not-found":
        return NotFoundError(message, code=code)
    return APIError(message, code=code)


class SalesNexusClient:
    """Async SalesNexus client: ``async with SalesNexusClient(config) as sn: ...``."""

    def __init__(self, config: SalesNexusConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._transport = HttpTransport(
            name="salesnexus",
            pacing=config.pacing,
            retry=config.retry,
            timeouts=config.timeouts,
        )
        self._rng = rng or random.Random()
        self._token: str | None = (
            config.token.get_secret_value() if config.token is not None else None
        )
        self._login_lock = asyncio.Lock()
        self._refused: AuthenticationError | None = None
        self._dispatch_lock = asyncio.Lock()
        self._pending: deque[_PendingCall] = deque()
        self._has_pending = asyncio.Event()
        self._senders: list[asyncio.Task[None]] = []
        self._request_seq = 0

    def __repr__(self) -> str:
        return f"SalesNexusClient(base_url={self.config.base_url!r}, email={self.config.email!r})"

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats

    async def __aenter__(self) -> SalesNexusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._senders.clear()
        while self._pending:
            pending = self._pending.popleft()
            if not pending.future.done():
                pending.future.set_exception(CRMError("client closed before the call was sent"))
        await self._transport.aclose()

    # -- sessions ---------------------------------------------------------------------------
    async def login(self) -> None:
        """Get a temporary login token with email and password (not needed with a token)."""
        if self.config.password is None or self.config.email is None:
            raise AuthenticationError("SalesNexus: the permanent token was refused")
        call = {
            "function": "get-login-token",
            "parameters": {
                "email-address": self.config.email,
                "password": self.config.password.get_secret_value(),
            },
            "request-id": "login",
        }
        body = orjson.dumps([call])
        retry = self.config.retry
        attempts = max(1, retry.max_attempts)
        for attempt in range(1, attempts + 1):
            self.stats.logins += 1
            elements = await self._transport.post(
                self.config.base_url, body, _parse_batch, what="get-login-token"
            )
            element = elements[0] if elements else {}
            # internal-error is the server failing on this call, not a refusal: retry it.
            if (element.get("error") or {}).get("code") != "internal-error":
                break
            if attempt == attempts:
                raise RetryBudgetExhausted(
                    "salesnexus get-login-token", attempts=attempt, last_error="internal-error"
                )
            self.stats.retries += 1
            await asyncio.sleep(backoff_delay(retry, attempt, self._rng))
        if "error" in element or not isinstance(element.get("result"), dict):
            error = element.get("error") or {}
            raise AuthenticationError(
                f"SalesNexus login failed for {self.config.email}: "
                f"{error.get('message') or 'no token in the answer'}"
            )
        self._token = str(element["result"]["login-token"])

    async def _ensure_token(self, stale: str | None = None) -> str:
        """The current token; logs in first when there is none or when ``stale`` is current."""
        async with self._login_lock:
            if self._refused is not None:
                raise self._refused  # refused credentials do not mend themselves: never retry
            if self._token is None or (stale is not None and self._token == stale):
                try:
                    if self.config.token is not None and stale is not None:
                        raise AuthenticationError("SalesNexus: the permanent token was refused")
                    await self.login()
                except AuthenticationError as exc:
                    self._refused = exc
                    raise
            assert self._token is not None
            return self._token

    # -- packing ----------------------------------------------------------------------------
    async def call(self, function: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run one API call; it travels packed with whatever other calls are queued.

        Creates (``create-*``, ``complete-activity``) are never repeated after a failure that
        leaves it unknown whether they were applied: they raise ``AmbiguousWriteError``.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        idempotent = function not in NOT_IDEMPOTENT
        self._pending.append(_PendingCall(function, dict(parameters or {}), future, idempotent))
        self._has_pending.set()
        self._start_senders()
        return await future

    def _start_senders(self) -> None:
        if not self._senders:
            self._senders = [
                asyncio.create_task(self._sender(), name=f"salesnexus-sender-{n}")
                for n in range(max(1, self.config.pacing.max_in_flight))
            ]

    async def _sender(self) -> None:
        while True:
            # Log in before taking a rate slot: the login spends a slot of its own, and a batch
            # must leave as soon as its slot is granted, or two requests reach the server at once.
            with contextlib.suppress(CRMError):
                await self._ensure_token()
            async with self._dispatch_lock:
                while not self._pending:
                    self._has_pending.clear()
                    await self._has_pending.wait()
                await self._transport.pace()
                await asyncio.sleep(0)  # let calls issued in the same tick join this request
                batch = self._take_batch()
                if not batch:
                    continue
            try:
                await self._send(batch)
            except Exception as exc:  # a whole-request failure belongs to every call in it
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            # An idle sender must not keep its last batch: the futures hold the decoded
            # answers (MBs per listing page) until the sender's next request.
            del batch

    def _take_batch(self) -> list[_PendingCall]:
        """Up to ``calls_per_request`` queued calls, skipping those whose caller gave up."""
        batch: list[_PendingCall] = []
        while self._pending and len(batch) < self.config.calls_per_request:
            pending = self._pending.popleft()
            if not pending.future.done():
                batch.append(pending)
        return batch

    async def _send(self, batch: list[_PendingCall]) -> None:
        token = await self._ensure_token()
        calls = []
        for pending in batch:
            self._request_seq += 1
            pending.token_used = token
            calls.append(
                {
                    "function": pending.function,
                    "parameters": {"login-token": token, **pending.parameters},
                    "request-id": str(self._request_seq),
                }
            )
        body = orjson.dumps(calls)
        self.stats.calls += len(calls)
        try:
            elements = await self._transport.post(
                self.config.base_url,
                body,
                _parse_batch,
                what=f"{len(calls)} calls",
                paced=True,
                idempotent=all(p.idempotent for p in batch),
            )
        except AmbiguousWriteError as exc:
            # The reads and upserts of the batch are safe to send again; the creates are not.
            for pending in batch:
                if pending.idempotent:
                    self._requeue(pending)
                elif not pending.future.done():
                    pending.future.set_exception(AmbiguousWriteError(str(exc)))
            return
        by_id = {str(e.get("request-id")): e for e in elements if isinstance(e, dict)}
        for pending, sent in zip(batch, calls, strict=True):
            element = by_id.get(sent["request-id"])
            if pending.future.done():
                continue
            if element is None:
                pending.future.set_exception(
                    APIError(f"SalesNexus {pending.function}: no answer for this call")
                )
            elif "error" in element:
                await self._on_call_error(pending, element["error"] or {})
            else:
                pending.future.set_result(element.get("result"))

    async def _on_call_error(self, pending: _PendingCall, error: dict[str, Any]) -> None:
        code = str(error.get("code") or "")
        if code == "invalid-login-token" and pending.relogins < MAX_RELOGINS_PER_CALL:
            # Log in again once for this failure and replay the call. A call that waited out a
            # 429 pause longer than a short token's lifetime may meet an expired token again:
            # that is a new expiry, not a refused login (a refused login is never retried).
            pending.relogins += 1
            try:
                await self._ensure_token(stale=pending.token_used)
            except CRMError as exc:
                if not pending.future.done():
                    pending.future.set_exception(exc)
                return
            self._requeue(pending)
        elif code == "internal-error" and pending.attempts + 1 < self.config.retry.max_attempts:
            pending.attempts += 1
            self.stats.retries += 1
            delay = backoff_delay(self.config.retry, pending.attempts, self._rng)
            asyncio.get_running_loop().call_later(delay, self._requeue, pending)
        elif code == "internal-error":
            pending.future.set_exception(
                RetryBudgetExhausted(
                    f"salesnexus {pending.function}",
                    attempts=pending.attempts + 1,
                    last_error="internal-error",
                )
            )
        else:
            pending.future.set_exception(_call_error(pending.function, error))

    def _requeue(self, pending: _PendingCall) -> None:
        if not pending.future.done():
            self._pending.appendleft(pending)
            self._has_pending.set()

    # -- the API ----------------------------------------------------------------------------
    async def get_all_fields(self) -> list[dict[str, Any]]:
        return list(await self.call("get-all-fields"))

    async def _listing(
        self, function: str, start_after: int, page_size: int, filter_value: str
    ) -> RecordPage:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        result = await self.call(
            function,
            {
                "filter-value": filter_value,
                "start-after": str(start_after),
                "page-size": str(page_size),
            },
        )
        ids_key, records_key = _LISTINGS[function]
        result = result or {}
        ids = [str(i) for i in result.get(ids_key) or []]
        return RecordPage(start_after, ids, list(result.get(records_key) or []))

    async def get_contacts(
        self, start_after: int = 0, page_size: int = MAX_PAGE_SIZE, filter_value: str = ""
    ) -> RecordPage:
        return await self._listing("get-contacts", start_after, page_size, filter_value)

    async def get_activities(
        self, start_after: int = 0, page_size: int = MAX_PAGE_SIZE, filter_value: str = ""
    ) -> RecordPage:
        return await self._listing("get-activities", start_after, page_size, filter_value)

    async def get_sales(
        self, start_after: int = 0, page_size: int = MAX_PAGE_SIZE, filter_value: str = ""
    ) -> RecordPage:
        return await self._listing("get-sales", start_after, page_size, filter_value)

    async def import_contacts(
        self,
        entries: Sequence[dict[str, Any]],
        *,
        create_if_not_updated: bool = True,
        match_nulls: bool = False,
    ) -> list[RowOutcome]:
        """Upsert any number of contacts (chunks of 1000, packed and sent concurrently).

        Each entry maps field ids to values and carries ``_toMatch``. Returns one outcome per
        entry in input order; re-sending a chunk is safe when it matches on the email field.
        """
        return await self.import_contacts_encoded(
            [orjson.dumps(entry).decode() for entry in entries],
            create_if_not_updated=create_if_not_updated,
            match_nulls=match_nulls,
        )

    async def import_contacts_encoded(
        self,
        entries: Sequence[str],
        *,
        create_if_not_updated: bool = True,
        match_nulls: bool = False,
    ) -> list[RowOutcome]:
        """:meth:`import_contacts` for entries already encoded as JSON objects (e.g. by
        :func:`etl.load.contact_payloads.salesnexus_entries`): same chunks, same outcomes."""
        starts = range(0, len(entries), MAX_IMPORT_ROWS)
        flags = {
            "create-if-not-updated": "true" if create_if_not_updated else "false",
            "match-nulls": "true" if match_nulls else "false",
        }
        results = await asyncio.gather(
            *(
                self.call(
                    "import-contacts",
                    {
                        "contacts": f"[{','.join(entries[start : start + MAX_IMPORT_ROWS])}]",
                        **flags,
                    },
                )
                for start in starts
            )
        )
        outcomes: list[RowOutcome] = []
        for start, result in zip(starts, results, strict=True):
            size = min(MAX_IMPORT_ROWS, len(entries) - start)
            outcomes.extend(_import_outcomes(start, size, result))
        return outcomes

    async def create_contact(self, field_data: dict[str, str]) -> str:
        return str(await self.call("create-contact", {"contact-field-data": field_data}))

    async def create_activity(self, parameters: dict[str, str]) -> str:
        return str(await self.call("create-activity", parameters))

    async def create_sales_opp(self, field_data: dict[str, str]) -> str:
        return str(await self.call("create-sales-opp", {"sales-field-data": field_data}))

    async def create_note(self, parameters: dict[str, str]) -> str:
        return str(await self.call("create-note", parameters))


def _import_outcomes(start: int, size: int, result: Any) -> list[RowOutcome]:
    by_index: dict[int, dict[str, Any]] = {}
    for element in result or []:
        if isinstance(element, dict) and isinstance(element.get("index"), int):
            by_index[element["index"]] = element
    outcomes = []
    for offset in range(size):
        element = by_index.get(offset)
        if element is None:
            outcomes.append(RowOutcome(start + offset, "failed", None, "no result for this entry"))
            continue
        status = str(element.get("status") or "error")
        contact_id = element.get("contact-id")
        contact_id = str(contact_id) if contact_id not in (None, "") else None
        message = element.get("message") or None
        if status in ("created", "updated", "skipped"):
            outcomes.append(RowOutcome(start + offset, status, contact_id, message))  # type: ignore[arg-type]
        else:
            outcomes.append(RowOutcome(start + offset, "failed", contact_id, message or status))
    return outcomes
