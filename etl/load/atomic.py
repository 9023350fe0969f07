"""Crash-safe file publication: write to a hidden temp file, fsync, then rename into place.

Readers (DuckDB, Spark, pyarrow.dataset, pandas) skip names starting with "." or "_", so a
half-written temp file is never mistaken for data, and ``os.replace`` makes the final name
appear atomically with complete contents.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(kind: str, value: str) -> str:
    """Reject names that could escape the output root or create hidden files."""
    if not _SAFE_NAME.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def temp_path_for(final: Path) -> Path:
    """The hidden temp name used while ``final`` is being written."""
    return final.with_name(f".{final.name}.tmp")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a rename; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(temp: Path, final: Path) -> None:
    """fsync ``temp`` and rename it to ``final`` (same directory)."""
    fsync_file(temp)
    os.replace(temp, final)
    fsync_dir(final.parent)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: several processes may replace the same file (e.g. the latest manifest).
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)
