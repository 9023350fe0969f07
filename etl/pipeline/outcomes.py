"""Per-row outcome files of a write run: ``success.csv`` and ``rejects.csv``, rendered from state.

Outcomes are recorded in the run's :class:`~etl.pipeline.state.RunState` as the CRM answers (in
completion order, possibly over several resumed invocations); :func:`render_outcomes` writes both
files from it at the end, sorted by source line and published atomically. The files are a pure
function of the recorded outcomes, so a resumed run's files are byte-identical to those of a run
that was never interrupted.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.load.atomic import publish, remove_quietly, temp_path_for
from etl.pipeline.state import RunState

SUCCESS_COLUMNS = ("line", "email", "id", "status")
REJECT_COLUMNS = ("line", "stage", "reason", "values")
SUCCESS_FILE = "success.csv"
REJECTS_FILE = "rejects.csv"


@dataclass(frozen=True)
class OutcomeCounts:
    """What the rendered files hold: rows loaded (by CRM status), rejected and dropped."""

    loaded: int
    rejected: int
    duplicates: int
    statuses: dict[str, int]


def outcome_paths(out: Path) -> tuple[Path, Path]:
    return Path(out) / SUCCESS_FILE, Path(out) / REJECTS_FILE


def render_outcomes(state: RunState, out: Path) -> OutcomeCounts:
    """Write ``success.csv`` and ``rejects.csv`` in ``out`` from ``state``, sorted by line."""
    success_path, rejects_path = outcome_paths(out)
    out.mkdir(parents=True, exist_ok=True)
    with _Published(success_path) as writer:  # writerows: no Python loop per row
        writer.writerow(SUCCESS_COLUMNS)
        writer.writerows(state.success_tuples())
    with _Published(rejects_path) as writer:
        writer.writerow(REJECT_COLUMNS)
        writer.writerows(state.reject_tuples())
    statuses: Counter[str] = Counter()
    rejected = duplicates = 0
    for (kind, status), n in state.outcome_statuses().items():
        if kind == "success":
            statuses[status] += n
        elif status == "duplicate":
            duplicates += n
        else:
            rejected += n
    return OutcomeCounts(
        loaded=sum(statuses.values()),
        rejected=rejected,
        duplicates=duplicates,
        statuses=dict(statuses),
    )


class _Published:
    """A CSV writer on a hidden temp file that replaces ``final`` only when the block succeeds."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = temp_path_for(final)

    def __enter__(self) -> Any:  # a csv writer
        self._handle = self.temp.open("w", newline="", encoding="utf-8")
        return csv.writer(self._handle, lineterminator="\n")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._handle.close()
        if exc_type is None:
            publish(self.temp, self.final)
        else:
            remove_quietly(self.temp)
