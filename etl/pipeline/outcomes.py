"""Per-row outcome files of a write run: ``success.csv`` and ``rejects.csv``.

Rows are appended as results arrive (in completion order) to hidden temp files; :meth:`close`
sorts each file by source line and publishes it atomically, so a finished run's files are the same
whatever the order the CRM answered in.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from etl.load.atomic import publish, remove_quietly, temp_path_for

SUCCESS_COLUMNS = ("line", "email", "id", "status")
REJECT_COLUMNS = ("line", "stage", "reason", "values")


class OutcomeFiles:
    """Appends outcome rows and publishes ``success.csv`` and ``rejects.csv`` at close."""

    def __init__(self, out: Path, *, key: str = "line") -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.success_path = self.out / "success.csv"
        self.rejects_path = self.out / "rejects.csv"
        self.counts: Counter[str] = Counter()
        self._files: dict[Path, TextIO] = {}
        self._writers: dict[Path, Any] = {}
        for path, columns in (
            (self.success_path, SUCCESS_COLUMNS),
            (self.rejects_path, REJECT_COLUMNS),
        ):
            handle = temp_path_for(path).open("w", newline="", encoding="utf-8")
            writer = csv.writer(handle)
            writer.writerow([key if c == "line" else c for c in columns])
            self._files[path] = handle
            self._writers[path] = writer

    def success(self, rows: list[tuple[int, str, str | None, str]]) -> None:
        self._writers[self.success_path].writerows(rows)
        self.counts["loaded"] += len(rows)

    def reject(self, rows: list[tuple[int, str, str, str]]) -> None:
        """Rows of (line, stage, reason, original values as JSON text)."""
        self._writers[self.rejects_path].writerows(rows)
        for row in rows:
            self.counts["duplicates" if row[1] == "duplicate" else "rejected"] += 1

    def close(self) -> None:
        for path, handle in self._files.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            temp = temp_path_for(path)
            frame = pd.read_csv(temp, dtype=str, keep_default_na=False)
            frame = frame.sort_values(self.key, key=lambda s: s.astype("int64"), kind="stable")
            frame.to_csv(temp, index=False)
            publish(temp, path)
        self._files.clear()

    def abort(self) -> None:
        for path, handle in self._files.items():
            handle.close()
            remove_quietly(temp_path_for(path))
        self._files.clear()
