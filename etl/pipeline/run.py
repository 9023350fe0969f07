"""What every run shares: its identity, live progress counters and the summary it ends with."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.clients import TransportStats


def new_run_id() -> str:
    """Sortable and unique: UTC time to the second plus a short random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class RunInterrupted(RuntimeError):
    """A run stopped cleanly before the end (quota or retry budget exhausted, a signal).

    Its state is committed in ``run_dir``; the same command with ``--resume run_dir`` continues
    where it stopped. The CLI exits with the documented "resumable" code.
    """

    def __init__(self, run_dir: Path, reason: str) -> None:
        super().__init__(f"{reason}; the run's state is saved in {run_dir}")
        self.run_dir = run_dir
        self.reason = reason


def first_error(error: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: the failure a user should read."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


@dataclass
class RunProgress:
    """Live counters the CLI reads to draw progress; the runner only ever adds to them."""

    pipeline: str
    rows: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    transports: list[TransportStats] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def transport_totals(self) -> dict[str, float]:
        totals: Counter[str] = Counter()
        for stats in self.transports:
            totals.update(stats.as_dict())
        return dict(totals)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class RunSummary:
    """The account a run gives of itself: rows per table, API usage, duration, outputs."""

    run_id: str
    pipeline: str
    kind: str
    status: str
    out: Path
    rows: dict[str, int]
    files: int
    requests: int
    calls: int
    rate_limited: int
    retries: int
    duration_s: float
    manifest: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        total = sum(self.rows.values())
        return total / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["manifest"] = str(self.manifest) if self.manifest else None
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data
