"""Records the clients hand to the layers above them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RowStatus = Literal["created", "updated", "upserted", "skipped", "failed"]


@dataclass(frozen=True)
class RowOutcome:
    """What the CRM did with one entry of a bulk write, keyed by the entry's input index.

    ``upserted`` is SALESmanago's answer (it does not say created or updated); SalesNexus says
    ``created``, ``updated`` or ``skipped``. ``failed`` rows carry the CRM's message.
    """

    index: int
    status: RowStatus
    id: str | None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class BatchOutcomes:
    """What the CRM did with every entry of a bulk write, column-wise (no object per entry).

    ``ids[i]`` is entry ``i``'s contact id, ``statuses[i]`` its :data:`RowStatus`;
    ``failures`` maps each failed entry's index to the CRM's message, ``""`` when it gave none
    (the mapping is empty when every entry went in).
    """

    ids: list[str | None]
    statuses: list[str]
    failures: dict[int, str]

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[RowOutcome]:
        """The same outcomes as one :class:`RowOutcome` per entry."""
        failures = self.failures
        return [
            RowOutcome(i, status, id_, failures.get(i) or None)  # type: ignore[arg-type]
            for i, (id_, status) in enumerate(zip(self.ids, self.statuses, strict=True))
        ]


@dataclass(frozen=True)
class ContactPage:
    """One page of SALESmanago's ``paginatedContactList``."""

    page: int
    contacts: list[dict[str, Any]]
    has_more: bool


@dataclass(frozen=True)
class RecordPage:
    """One page of a SalesNexus listing: ids parallel to their records."""

    start_after: int
    ids: list[str]
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class ContactRef:
    id: str
    email: str | None


@dataclass
class TransportStats:
    """Counters a run summary reports: HTTP requests sent and what went wrong with them."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    invalid_json: int = 0
    waited_seconds: float = 0.0
    calls: int = 0
    logins: int = 0
    paced_rate: float | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "calls": self.calls,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "connection_errors": self.connection_errors,
            "invalid_json": self.invalid_json,
            "logins": self.logins,
            "waited_seconds": round(self.waited_seconds, 3),
        }
