"""What incremental exports carry from one run to the next: ``<out>/_state/state.db``.

- watermarks: per stream, the epoch ms up to which changes are exported (SALESmanago: the end
  of the last change window; SalesNexus: when the last full scan started);
- SALESmanago: every known contact id with the ids of its activities and sales (the snapshot
  a periodic full id listing is diffed against, and what a deleted contact's tombstones name);
- SalesNexus: a hash of every row per table, keyed by id (the previous snapshot);
- the generation (advanced by every finished run), the last run's id and how many runs ago
  the last SALESmanago snapshot diff was.

A run changes this state only after its files and manifest are published, in one transaction,
so a crash in between makes the next run export the same changes again rather than lose them.
One incremental export at a time may use an output directory: the store is locked meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from etl.pipeline.state import ResumeError, RunState

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]

STATE_DIR = "_state"  # leading "_": dataset readers skip it
STORE_KIND = "export-incremental"
INFO = "incremental"
WATERMARKS = "watermarks"
KNOWN = "known:salesmanago"


def hashes_namespace(table: str) -> str:
    return f"hashes:{table}"


@dataclass(frozen=True)
class IncrementalSettings:
    """``[export]`` keys of ``mode = "incremental"``.

    ``lag_seconds``: each run re-reads this much before the previous watermark, for changes
    recorded late. ``window_seconds``: the longest time range asked of SALESmanago at once.
    ``snapshot_every``: SALESmanago runs between full id listings that detect deletions.
    """

    lag_seconds: int = 300
    window_seconds: int = 86_400
    snapshot_every: int = 7

    def __post_init__(self) -> None:
        if self.lag_seconds < 0 or self.window_seconds < 1 or self.snapshot_every < 1:
            raise ValueError(
                "lag_seconds must be >= 0, window_seconds and snapshot_every must be >= 1"
            )

    def describe(self) -> str:
        return (
            f"incremental (lag {self.lag_seconds} s, windows of at most {self.window_seconds} s, "
            f"a snapshot every {self.snapshot_every} runs)"
        )


class StateLocked(ResumeError):
    """Another incremental export is using the same output directory."""


class StateMismatch(ResumeError):
    """The incremental state belongs to another source."""


class CrossRunState:
    """The incremental state of one output directory; use as a context manager (it locks)."""

    def __init__(self, out: Path) -> None:
        self.directory = Path(out) / STATE_DIR
        self._store: RunState | None = None
        self._lock: BinaryIO | None = None

    def __enter__(self) -> CrossRunState:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = (self.directory / "lock").open("wb")
        if fcntl is not None:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                self._lock = None
                raise StateLocked(
                    f"another incremental export is running on {self.directory.parent} "
                    "(its state is locked); wait for it to finish"
                ) from None
        try:
            self._store = RunState.open_store(self.directory, kind=STORE_KIND)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                if fcntl is not None:
                    fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @property
    def store(self) -> RunState:
        if self._store is None:
            raise RuntimeError("the incremental state is not open")
        return self._store

    # -- reading -------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        return self.store.get(INFO)

    @property
    def generation(self) -> int:
        return int(self.info.get("generation", 0))

    def check_source(self, source: str, account: str) -> None:
        """Refuse a state written by exports of another CRM account."""
        info = self.info
        recorded = (info.get("source"), info.get("account"))
        if info.get("source") is not None and recorded != (source, account):
            raise StateMismatch(
                f"{self.directory} holds the incremental state of another source "
                f"({info.get('source')}: {info.get('account')}); use another output directory"
            )

    def watermarks(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.store.get(WATERMARKS).items()}

    def known(self) -> dict[str, dict[str, list[str]]]:
        """SALESmanago: contact id -> {child table: [child ids]}."""
        return self.store.get(KNOWN)

    def hashes(self, table: str) -> dict[str, str]:
        """SalesNexus: row id -> hash of the raw row, as the last run saw it."""
        return self.store.get(hashes_namespace(table))

    # -- advancing ------------------------------------------------------------------------------
    def advance(
        self,
        *,
        run_id: str,
        source: str,
        account: str,
        watermarks: Mapping[str, int],
        puts: Mapping[str, Mapping[str, Any]],
        deletes: Mapping[str, Iterable[str]],
        runs_since_snapshot: int,
    ) -> None:
        """Record a finished run: all of it in one transaction."""
        info = {
            "source": source,
            "account": account,
            "generation": self.generation + 1,
            "last_run_id": run_id,
            "runs_since_snapshot": runs_since_snapshot,
        }
        self.store.apply({**puts, WATERMARKS: dict(watermarks), INFO: info}, deletes)
