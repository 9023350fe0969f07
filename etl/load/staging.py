"""Checkpointed file sinks: what a sink made durable, and how a resumed run takes it back.

A resumable run writes its files in a staging directory that dataset readers never look at
(``<out>/_runs/<run_id>/staging``). At a checkpoint a sink finishes its current file (a Parquet
part) or flushes it (CSV), fsyncs it and its directory, and reports each file as a
:class:`StagedFile`; the run records those in its state *after* they are durable. A resumed run
hands them back to a fresh sink (``resume``), which re-adopts them and drops anything written
after the checkpoint. ``close()`` then publishes every file into the dataset, as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from etl.load.sink import TableSink


class StagingError(RuntimeError):
    """A file a checkpoint recorded is gone or changed: the run cannot continue from it."""


@dataclass(frozen=True)
class StagedFile:
    """One durable file of a table; ``path`` is where it will be published, ``staged`` where it
    is now (both relative to the output root, posix style)."""

    table: str
    path: str
    staged: str
    rows: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StagedFile:
        return cls(
            table=str(data["table"]),
            path=str(data["path"]),
            staged=str(data["staged"]),
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
        )


@runtime_checkable
class ResumableSink(TableSink, Protocol):
    """A :class:`TableSink` that can checkpoint, resume from a checkpoint, and step aside."""

    def checkpoint(self, *, final: bool = False) -> list[StagedFile]:
        """Make everything written so far durable; ``final`` also gives an empty table its file."""
        ...

    def resume(self, files: list[StagedFile]) -> None:
        """Adopt the files of a checkpoint (before any write); drop what came after it."""
        ...

    def suspend(self) -> None:
        """Stop: discard what is not checkpointed, keep what is (the run may resume)."""
        ...


def locate(root: Path, file: StagedFile, *, may_grow: bool = False) -> tuple[Path, bool]:
    """Where a checkpointed file is now: ``(path, published)``; raises :class:`StagingError`.

    A file is found in staging, or already at its final path when an earlier attempt stopped
    while publishing. Its size must match the checkpoint; ``may_grow`` accepts a staged file
    that grew past it (a CSV file appended to after the checkpoint, cut back by the caller).
    """
    staged, final = root / file.staged, root / file.path
    size = staged.stat().st_size if staged.is_file() else -1
    if size == file.bytes or (may_grow and size > file.bytes):
        return staged, False
    if final.is_file() and final.stat().st_size == file.bytes:
        return final, True
    raise StagingError(
        f"{file.staged}: the checkpointed file of table {file.table!r} is missing or shorter "
        f"than the {file.bytes} bytes recorded"
    )
