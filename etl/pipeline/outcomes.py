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
    files = OutcomeFiles(state, out)
    try:
        return files.finish()
    except BaseException:
        files.abort()
        raise


class OutcomeFiles:
    """Both outcome files, written while the run goes on and published at the end.

    :meth:`advance` appends every recorded outcome up to a line, once the caller knows that no
    outcome at or below that line can still come (e.g. every write chunk up to it committed).
    So the files are mostly written while the CRM is still busy, yet they are the same bytes
    as one ordered pass over the state: each call continues the ordered scan where the last
    one stopped. Call them from one thread at a time, the one that writes the state.
    """

    def __init__(self, state: RunState, out: Path) -> None:
        self.state = state
        self.through = -1  # every outcome at or below this line is written
        out.mkdir(parents=True, exist_ok=True)
        success_path, rejects_path = outcome_paths(out)
        self._success = _Published(success_path)
        self._rejects = _Published(rejects_path)
        self._success_writer = self._success.open()
        self._rejects_writer = self._rejects.open()
        self._success_writer.writerow(SUCCESS_COLUMNS)
        self._rejects_writer.writerow(REJECT_COLUMNS)

    def advance(self, through: int) -> None:
        """Write the outcomes of the lines after the last call's, up to ``through``."""
        if through <= self.through:
            return
        # writerows: no Python loop per row
        self._success_writer.writerows(self.state.success_tuples(self.through, through))
        self._rejects_writer.writerows(self.state.reject_tuples(self.through, through))
        self.through = through

    def finish(self) -> OutcomeCounts:
        """Write the rest, publish both files; what they hold."""
        self.advance(_LAST_LINE)
        self._success.close(publish_it=True)
        self._rejects.close(publish_it=True)
        statuses: Counter[str] = Counter()
        rejected = duplicates = 0
        for (kind, status), n in self.state.outcome_statuses().items():
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

    def abort(self) -> None:
        """Remove the unpublished files (the run did not finish)."""
        self._success.close(publish_it=False)
        self._rejects.close(publish_it=False)


_LAST_LINE = 2**63 - 1  # SQLite's largest integer


class _Published:
    """A CSV writer on a hidden temp file that replaces ``final`` only when published."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = temp_path_for(final)
        self._handle: Any = None

    def open(self) -> Any:  # a csv writer
        self._handle = self.temp.open("w", newline="", encoding="utf-8")
        return csv.writer(self._handle, lineterminator="\n")

    def close(self, *, publish_it: bool) -> None:
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        if publish_it:
            publish(self.temp, self.final)
        else:
            remove_quietly(self.temp)
