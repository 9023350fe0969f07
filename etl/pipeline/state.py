"""The state that makes a run resumable: one SQLite database (WAL mode) in the run directory.

It holds the run's identity and fingerprint (so a resume with another input or spec is refused),
a ledger of write chunks with their per-row outcomes, export cursors (the last committed page
per stream, with the files committed up to it), and free-form key/value entries.

Commit order is the caller's contract: record a chunk or a cursor only *after* the data it
describes is durable (the CRM answered; the file part was renamed into place). Each ``record_*``
call is one transaction, so a crash leaves either all of it or none.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

STATE_FILE = "state.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    key TEXT PRIMARY KEY,
    first_line INTEGER NOT NULL,
    last_line INTEGER NOT NULL,
    rows_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    committed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    line INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,          -- success | reject
    email TEXT,
    target_id TEXT,
    status TEXT,                 -- success: created/updated/upserted; reject: its stage
    reason TEXT,
    original TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    stream TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    files TEXT NOT NULL,         -- JSON list of committed files
    committed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""


class ResumeError(RuntimeError):
    """A run directory cannot be resumed (missing, finished, or its input or spec changed).

    ``changed`` names the fingerprint entries that differ, when that is the reason.
    """

    def __init__(self, message: str, *, changed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.changed = changed


def file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SuccessRow(NamedTuple):
    """A loaded row; a tuple in the ``outcomes`` table's column order (cheap per row)."""

    line: int
    email: str
    target_id: str | None
    status: str


class RejectRow(NamedTuple):
    line: int
    stage: str
    reason: str
    original: str


class RunState:
    """Open with :meth:`create` (a new run) or :meth:`resume` (an interrupted one)."""

    def __init__(self, run_dir: Path, connection: sqlite3.Connection) -> None:
        self.run_dir = run_dir
        self._db = connection
        self._scratch = False

    # -- lifecycle ---------------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        return db

    @classmethod
    def create(
        cls,
        run_dir: Path,
        *,
        kind: str,
        pipeline: str,
        run_id: str,
        fingerprint: Mapping[str, str],
    ) -> RunState:
        """A fresh state for a new run; refuses a directory that already holds another run."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / STATE_FILE
        if path.exists():
            existing = cls(run_dir, cls._connect(path))
            status = existing.meta.get("status")
            if status != "done":
                run_id = existing.meta.get("run_id")
                existing.close()
                raise ResumeError(
                    f"{run_dir} holds an unfinished run ({run_id}, "
                    f"{status}): resume it with --resume {run_dir}, or use another output "
                    "directory"
                )
            existing.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        state = cls(run_dir, cls._connect(path))
        state._put_meta(
            {
                "schema_version": str(SCHEMA_VERSION),
                "kind": kind,
                "pipeline": pipeline,
                "run_id": run_id,
                "fingerprint": json.dumps(dict(fingerprint), sort_keys=True),
                "status": "running",
                "created_at": str(time.time()),
            }
        )
        return state

    @classmethod
    def resume(cls, run_dir: Path, *, kind: str, fingerprint: Mapping[str, str]) -> RunState:
        """The state of an interrupted run; refuses a finished run or a changed input/spec."""
        run_dir = Path(run_dir)
        path = run_dir / STATE_FILE
        if not path.is_file():
            raise ResumeError(f"{run_dir}: no run state here ({STATE_FILE} is missing)")
        state = cls(run_dir, cls._connect(path))
        meta = state.meta
        if meta.get("kind") != kind:
            state.close()
            raise ResumeError(f"{run_dir} holds a {meta.get('kind')} run, not a {kind} run")
        if meta.get("status") == "done":
            state.close()
            raise ResumeError(f"{run_dir}: the run {meta.get('run_id')} already finished")
        recorded = json.loads(meta.get("fingerprint", "{}"))
        changed = sorted(
            k for k in set(recorded) | set(fingerprint) if recorded.get(k) != fingerprint.get(k)
        )
        if changed:
            state.close()
            raise ResumeError(
                f"{run_dir}: cannot resume, the {' and the '.join(changed)} changed since the "
                "run started (start a new run instead)",
                changed=tuple(changed),
            )
        state.set_status("running")
        return state

    @classmethod
    def scratch(cls, *, kind: str, pipeline: str, run_id: str) -> RunState:
        """A throwaway state in a private temp directory, removed by :meth:`close` (dry runs)."""
        run_dir = Path(tempfile.mkdtemp(prefix="crm-etl-state-"))
        state = cls.create(run_dir, kind=kind, pipeline=pipeline, run_id=run_id, fingerprint={})
        state._scratch = True
        return state

    @staticmethod
    def status_of(run_dir: Path) -> str | None:
        """The status recorded in ``run_dir`` (``None`` without a state); only reads."""
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            return None
        try:
            db = sqlite3.connect(path)  # read-write: closing it tidies the WAL files away
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    @classmethod
    def open_store(cls, directory: Path, *, kind: str) -> RunState:
        """A long-lived store outside any run (e.g. the state incremental exports carry from one
        run to the next): created when missing, no run identity or status; refuses a store of
        another kind."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        store = cls(directory, cls._connect(directory / STATE_FILE))
        recorded = store.meta.get("kind")
        if recorded is None:
            store._put_meta({"schema_version": str(SCHEMA_VERSION), "kind": kind})
        elif recorded != kind:
            store.close()
            raise ResumeError(f"{directory} holds a {recorded} state, not a {kind} state")
        return store

    def close(self) -> None:
        self._db.close()
        if self._scratch:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def discard(self) -> None:
        """Close and delete the state (a run that failed before anything was worth keeping)."""
        self._db.close()
        path = self.run_dir / STATE_FILE
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if self._scratch:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- meta ----------------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    def _put_meta(self, values: Mapping[str, str]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items()
            )

    def set_status(self, status: str) -> None:
        """``running``, ``interrupted``, ``failed`` or ``done``."""
        self._put_meta({"status": status})

    # -- the write ledger ----------------------------------------------------------------------
    def chunk_done(self, key: str) -> bool:
        row = self._db.execute("SELECT status FROM chunks WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] == "committed"

    def committed_chunks(self) -> set[str]:
        rows = self._db.execute("SELECT key FROM chunks WHERE status = 'committed'").fetchall()
        return {r[0] for r in rows}

    def committed_chunk_hashes(self) -> dict[str, str]:
        """``{key: rows_hash}`` of every committed chunk (a resume skips those that still match)."""
        query = "SELECT key, rows_hash FROM chunks WHERE status = 'committed'"
        return dict(self._db.execute(query).fetchall())

    def record_chunk(
        self,
        key: str,
        *,
        first_line: int,
        last_line: int,
        rows_hash: str,
        successes: Iterable[SuccessRow],
        rejects: Iterable[RejectRow] = (),
    ) -> None:
        """One write chunk and its per-row outcomes, committed together."""
        with self._transaction():
            self._insert_outcomes(successes, rejects)
            self._db.execute(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, 'committed', ?)",
                (key, first_line, last_line, rows_hash, time.time()),
            )

    def record_rejects(self, rejects: Iterable[RejectRow]) -> None:
        """Rows rejected before any write (idempotent: a line is stored once)."""
        with self._transaction():
            self._insert_outcomes((), rejects)

    def _insert_outcomes(
        self, successes: Iterable[SuccessRow], rejects: Iterable[RejectRow]
    ) -> None:
        # The rows are tuples in the statements' parameter order: passed on as they are.
        self._db.executemany(
            "INSERT OR REPLACE INTO outcomes VALUES (?, 'success', ?, ?, ?, NULL, NULL)",
            successes,
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO outcomes VALUES (?, 'reject', NULL, NULL, ?, ?, ?)",
            rejects,
        )

    def successes(self) -> Iterator[SuccessRow]:
        query = (
            "SELECT line, email, target_id, status FROM outcomes "
            "WHERE kind = 'success' ORDER BY line"
        )
        for line, email, target_id, status in self._db.execute(query):
            yield SuccessRow(line, email, target_id, status)

    def rejects(self) -> Iterator[RejectRow]:
        query = (
            "SELECT line, status, reason, original FROM outcomes "
            "WHERE kind = 'reject' ORDER BY line"
        )
        for line, stage, reason, original in self._db.execute(query):
            yield RejectRow(line, stage, reason, original or "")

    def success_tuples(
        self, after: int = -1, through: int = 2**63 - 1
    ) -> Iterator[tuple[int, str, str | None, str]]:
        """:meth:`successes` of the lines in ``(after, through]``, as plain tuples (a file
        writer's rows, no object per row)."""
        query = (
            "SELECT line, email, target_id, status FROM outcomes "
            "WHERE kind = 'success' AND line > ? AND line <= ? ORDER BY line"
        )
        return self._db.execute(query, (after, through))

    def reject_tuples(
        self, after: int = -1, through: int = 2**63 - 1
    ) -> Iterator[tuple[int, str, str, str]]:
        """:meth:`rejects` of the lines in ``(after, through]``, as plain tuples."""
        query = (
            "SELECT line, status, reason, COALESCE(original, '') FROM outcomes "
            "WHERE kind = 'reject' AND line > ? AND line <= ? ORDER BY line"
        )
        return self._db.execute(query, (after, through))

    def outcome_statuses(self) -> dict[tuple[str, str], int]:
        """``{(kind, status): rows}``: loaded rows by CRM status, rejected rows by stage."""
        query = "SELECT kind, status, COUNT(*) FROM outcomes GROUP BY 1, 2"
        return {(kind, status): n for kind, status, n in self._db.execute(query)}

    def outcome_counts(self) -> dict[str, int]:
        """``loaded``, ``rejected`` and ``duplicates`` so far."""
        counts = {"loaded": 0, "rejected": 0, "duplicates": 0}
        query = "SELECT kind, status = 'duplicate', COUNT(*) FROM outcomes GROUP BY 1, 2"
        for kind, duplicate, n in self._db.execute(query):
            key = "loaded" if kind == "success" else ("duplicates" if duplicate else "rejected")
            counts[key] += n
        return counts

    # -- export cursors ------------------------------------------------------------------------
    def cursor(self, stream: str) -> tuple[int, list[dict[str, Any]]] | None:
        """The last committed position of ``stream`` and the files committed up to it."""
        row = self._db.execute(
            "SELECT position, files FROM cursors WHERE stream = ?", (stream,)
        ).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def commit_cursor(self, stream: str, position: int, files: list[dict[str, Any]]) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?)",
                (stream, position, json.dumps(files), time.time()),
            )

    def cursors(self) -> dict[str, tuple[int, list[dict[str, Any]]]]:
        """Every stream's cursor: ``{stream: (position, files)}``."""
        rows = self._db.execute("SELECT stream, position, files FROM cursors").fetchall()
        return {stream: (int(position), json.loads(files)) for stream, position, files in rows}

    def commit_checkpoint(
        self,
        cursors: Mapping[str, int],
        files: list[dict[str, Any]],
        entries: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Several streams' cursors, the files durable up to them, and the entries that go with
        them (e.g. ids seen so far), all in one transaction. Every cursor lists all ``files``."""
        now = time.time()
        encoded = json.dumps(files)
        with self._transaction():
            self._put_entries(entries or {})
            self._db.executemany(
                "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?)",
                ((stream, position, encoded, now) for stream, position in cursors.items()),
            )

    # -- anything else -------------------------------------------------------------------------
    def put(self, namespace: str, items: Mapping[str, Any]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                ((namespace, k, json.dumps(v)) for k, v in items.items()),
            )

    def get(self, namespace: str) -> dict[str, Any]:
        rows = self._db.execute(
            "SELECT key, value FROM entries WHERE namespace = ?", (namespace,)
        ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def apply(
        self,
        puts: Mapping[str, Mapping[str, Any]],
        deletes: Mapping[str, Iterable[str]] | None = None,
        *,
        clear: Iterable[str] = (),
    ) -> None:
        """Several namespaces at once, in one transaction: ``clear`` empties whole namespaces,
        then ``deletes`` removes keys and ``puts`` writes entries."""
        with self._transaction():
            self._db.executemany("DELETE FROM entries WHERE namespace = ?", ((ns,) for ns in clear))
            for namespace, keys in (deletes or {}).items():
                self._db.executemany(
                    "DELETE FROM entries WHERE namespace = ? AND key = ?",
                    ((namespace, key) for key in keys),
                )
            self._put_entries(puts)

    def _put_entries(self, puts: Mapping[str, Mapping[str, Any]]) -> None:
        for namespace, items in puts.items():
            self._db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                ((namespace, k, json.dumps(v)) for k, v in items.items()),
            )

    # -- plumbing ------------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
