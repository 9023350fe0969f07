"""Resumable exports: interrupted runs continue from their last checkpoint and end exactly as an
uninterrupted run would (same rows, same manifest counts; only part boundaries may differ).

Interruptions are real: a seeded fault stream with a retry budget of one attempt, a cancelled
task, and ``kill -9`` of an export subprocess reading from a sandbox served by another process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from etl.cli.sandbox_cmd import sandbox_environment
from etl.clients import RetryPolicy
from etl.load import make_sink, manifest_counts_match, read_manifest
from etl.pipeline.export import ExportJob, run_export
from etl.pipeline.jobs import job_from_spec
from etl.pipeline.run import RunInterrupted
from etl.pipeline.spec import load_spec
from etl.pipeline.state import ResumeError
from etl.sandbox import FaultConfig, SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from tests.support import sm_config, sn_config
from tests.test_export import assert_export, read_csv_rows, sn_expected, visible_files

TABLES = ("contacts", "activities", "sales")
PAGE = 50
SEEDED = SandboxConfig(contacts=600, activities=900, sales=200)  # 12 SALESmanago pages
FAULT_RATE = 0.1
FAILING_REQUEST = 7  # the 8th request fails: pages 0..6 are read before it
ONE_ATTEMPT = RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.01)
CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]


def fault_seed(first_failure: int) -> int:
    """A seed whose fault stream fails exactly request ``first_failure`` first (one draw per
    request when only ``server_error`` is set)."""

    def first(seed: int) -> int:
        draws = random.Random(seed)
        return next(i for i in range(10_000) if draws.random() < FAULT_RATE)

    return next(seed for seed in range(10_000) if first(seed) == first_failure)


def job(out: Path, crm: str, connection: Any, **overrides: Any) -> ExportJob:
    values: dict[str, Any] = {
        "pipeline": f"resume_{crm}",
        "crm": crm,
        "connection": connection,
        "out": out,
        "page_size": PAGE,
        "checkpoint_pages": 3,
    }
    return ExportJob(**{**values, **overrides})


def state_of(run_dir: Path) -> tuple[str | None, dict[str, int]]:
    """The status and cursors recorded in a run directory (read-only, as another process)."""
    db = sqlite3.connect(f"{(run_dir / 'state.db').resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
        status = None if row is None else row[0]  # None: the state is being created
        cursors = dict(db.execute("SELECT stream, position FROM cursors").fetchall())
    finally:
        db.close()
    return status, cursors


def committed_cursors(run_dir: Path) -> dict[str, int]:
    """The committed cursors, or none yet (also while the state is being created)."""
    try:
        return state_of(run_dir)[1] if (run_dir / "state.db").is_file() else {}
    except sqlite3.Error:
        return {}


def staged_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "staging").rglob("*") if p.is_file())


def sorted_table(out: Path, table: str) -> pa.Table:
    data = ds.dataset(out / table, format="parquet", partitioning="hive").to_table()
    return data.sort_by("source_id")


def assert_same_export(out: Path, reference: Path, fmt: str = "parquet") -> None:
    """Equal rows per table, equal manifest counts, and every published file in the manifest."""
    got, want = read_manifest(out / "manifest.json"), read_manifest(reference / "manifest.json")
    assert {t: m.rows for t, m in got.tables.items()} == {t: m.rows for t, m in want.tables.items()}
    assert manifest_counts_match(out, got) == []
    assert sorted(f.path for m in got.tables.values() for f in m.files) == visible_files(out)
    for table in TABLES:
        if fmt == "parquet":
            assert sorted_table(out, table).equals(sorted_table(reference, table)), table
        else:
            key = lambda row: row["source_id"]  # noqa: E731
            assert sorted(read_csv_rows(out, table), key=key) == sorted(
                read_csv_rows(reference, table), key=key
            ), table


# --- the sinks -------------------------------------------------------------------------------

SIMPLE = pa.schema([("id", pa.int64()), ("v", pa.string())])
DAY = date(2026, 11, 23)


def simple_rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": list(range(start, start + n)), "v": [f"r{i}" for i in range(n)]})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_sink_resumes_from_its_checkpoint_and_drops_what_came_after(
    tmp_path: Path, fmt: str
) -> None:
    staging = tmp_path / "_runs" / "r1" / "staging"

    def sink() -> Any:
        return make_sink(fmt, tmp_path, "t", SIMPLE, partition_date=DAY, run_id="r1",
                         staging=staging)  # fmt: skip

    first = sink()
    first.write(simple_rows(0, 30))
    assert first.checkpoint() == first.checkpoint()  # a second checkpoint adds nothing
    first.write(simple_rows(30, 20))
    files = first.checkpoint()
    first.write(simple_rows(50, 7))  # written after the checkpoint, then the process dies:
    first.checkpoint()  # even made durable, what the state never recorded is dropped
    assert visible_files(tmp_path) == []

    second = sink()
    second.resume(files)
    assert second.rows_written == 50
    second.write(simple_rows(50, 5))
    written = second.close()

    assert sum(f.rows for f in written) == 55
    assert not any(p.is_file() for p in staging.rglob("*"))  # nothing left in staging
    if fmt == "parquet":
        ids = ds.dataset(tmp_path / "t", partitioning="hive").to_table().column("id")
        assert [f.rows for f in written] == [30, 20, 5]  # parts end at checkpoints
    else:
        (csv_file,) = (tmp_path / "t").glob("*.csv")
        ids = pa.array([int(line.split(",")[0]) for line in csv_file.read_text().splitlines()[1:]])
    assert sorted(ids.to_pylist()) == list(range(55))


# --- in-process interruptions ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_retry_budget_interrupts_and_resume_ends_as_an_uninterrupted_run(
    tmp_path: Path, fmt: str
) -> None:
    faults = FaultConfig(server_error=FAULT_RATE, seed=fault_seed(FAILING_REQUEST))
    out, reference = tmp_path / "out", tmp_path / "reference"
    async with SalesManagoEmulator(replace(SEEDED, faults=faults)) as sm:
        # one page in flight at a time: request n is page n
        interrupted = job(out, "salesmanago", sm_config(sm, retry=ONE_ATTEMPT), fmt=fmt)
        interrupted = replace(interrupted, prefetch_pages=1)
        with pytest.raises(RunInterrupted) as caught:
            await run_export(interrupted)
        run_dir = caught.value.run_dir
        assert run_dir == out / "_runs" / interrupted.run_id
        assert "gave up after 1 attempts" in caught.value.reason
        # every page read before the failure is committed, nothing is published
        assert state_of(run_dir) == ("interrupted", {"contacts": FAILING_REQUEST - 1})
        assert visible_files(out) == []
        assert staged_files(run_dir) != []

        sm.config = replace(sm.config, faults=FaultConfig())  # the outage ends
        pages_before = len(sm.stats.batch_sizes["contact/paginatedContactList"])
        resumed = job(out, "salesmanago", sm_config(sm), fmt=fmt, prefetch_pages=1)
        resumed = replace(resumed, resume_from=run_dir)
        summary = await run_export(resumed)
        pages_read = len(sm.stats.batch_sizes["contact/paginatedContactList"]) - pages_before
        await run_export(job(reference, "salesmanago", sm_config(sm), fmt=fmt))

    assert pages_read == 12 - FAILING_REQUEST  # it continued after the cursor
    assert summary.run_id == interrupted.run_id and summary.details["attempts"] == 2
    assert summary.rows == {"contacts": 600, "activities": 900, "sales": 200}
    assert state_of(run_dir)[0] == "done"
    assert not (run_dir / "staging").exists()
    assert_same_export(out, reference, fmt)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run_id"] == interrupted.run_id
    assert manifest["stats"]["attempts"] == 2
    with pytest.raises(ResumeError, match="already finished"):
        await run_export(resumed)


async def test_a_cancelled_export_saves_its_state_and_resumes(tmp_path: Path) -> None:
    out, reference = tmp_path / "out", tmp_path / "reference"
    config = replace(SEEDED, latency=0.02)
    async with SalesNexusEmulator(config) as sn:
        first = job(out, "salesnexus", sn_config(sn), prefetch_pages=2, checkpoint_pages=2)
        run_dir = out / "_runs" / first.run_id
        task = asyncio.create_task(run_export(first))
        while not committed_cursors(run_dir) and not task.done():  # a checkpoint, then cancel
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        status, cursors = state_of(run_dir)
        assert status == "interrupted"
        assert set(cursors) <= set(TABLES) and cursors != {}
        assert visible_files(out) == []

        listings = {t: f"get-{t}" for t in TABLES}
        before = {t: sn.stats.calls[f] for t, f in listings.items()}
        resumed = job(out, "salesnexus", sn_config(sn), prefetch_pages=1)
        summary = await run_export(replace(resumed, resume_from=run_dir))
        read = {t: sn.stats.calls[f] - before[t] for t, f in listings.items()}
        await run_export(job(reference, "salesnexus", sn_config(sn)))
        expected = sn_expected(sn.store)

    # each listing continued after its cursor (pages of 50, then one empty page)
    sizes = {"contacts": 600, "activities": 900, "sales": 200}
    committed = {t: cursors[t] // PAGE + 1 if t in cursors else 0 for t in TABLES}
    assert read == {t: sizes[t] // PAGE + 1 - committed[t] for t in TABLES}
    assert sum(committed.values()) > 0
    assert summary.rows == sizes
    assert_export(out, "parquet", expected, TABLES)  # each record once, field by field
    assert_same_export(out, reference)


async def test_resuming_with_a_changed_spec_is_refused(tmp_path: Path) -> None:
    faults = FaultConfig(server_error=FAULT_RATE, seed=fault_seed(FAILING_REQUEST))
    async with SalesManagoEmulator(replace(SEEDED, faults=faults)) as sm:
        connection = sm_config(sm, retry=ONE_ATTEMPT)
        with pytest.raises(RunInterrupted) as caught:
            await run_export(job(tmp_path, "salesmanago", connection, prefetch_pages=1))
        run_dir = caught.value.run_dir
        sm.config = replace(sm.config, faults=FaultConfig())
        resumed = replace(job(tmp_path, "salesmanago", sm_config(sm)), resume_from=run_dir)

        with pytest.raises(ResumeError, match="the tables changed") as refused:
            await run_export(replace(resumed, tables=("contacts",)))
        assert refused.value.changed == ("tables",)
        with pytest.raises(ResumeError, match="the output format and the page size changed"):
            await run_export(replace(resumed, fmt="csv", page_size=25))
        with pytest.raises(ResumeError, match="the export mode changed"):
            await run_export(replace(resumed, mode="incremental"))
        with pytest.raises(ResumeError, match="not a run directory of the output"):
            await run_export(replace(resumed, out=tmp_path / "elsewhere"))
        assert state_of(run_dir) == ("interrupted", {"contacts": FAILING_REQUEST - 1})

        summary = await run_export(resumed)  # the unchanged spec still resumes
    assert summary.rows == {"contacts": 600, "activities": 900, "sales": 200}


# --- kill -9 of a subprocess ----------------------------------------------------------------

SPEC = """
[pipeline]
name = "killed_export"
kind = "export"

[source]
crm = "salesmanago"
base_url = "${SALESMANAGO_BASE_URL}"
client_id = "${SALESMANAGO_CLIENT_ID}"
api_key = "${SALESMANAGO_API_KEY}"
api_secret = "${SALESMANAGO_API_SECRET}"
owner = "${SALESMANAGO_OWNER}"

[source.pacing]
rate = 1000.0
burst = 10

[export]
page_size = 50
prefetch_pages = 2
checkpoint_pages = 2

[destination]
path = "out"
"""


def serve_sandbox(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``crm-etl sandbox --json`` in its own process; returns it and the SALESMANAGO_* env."""
    sandbox = subprocess.Popen(
        [*CLI, "sandbox", "--json", "--contacts", "1000", "--activities", "1500", "--sales",
         "250", "--latency", "0.05"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert sandbox.stdout is not None
    info = json.loads(sandbox.stdout.readline())
    env = {**os.environ, **sandbox_environment({"salesmanago": info["salesmanago"]})}
    return sandbox, env


def wait_for_checkpoints(export: subprocess.Popen[str], out: Path, position: int) -> Path:
    """Poll the run's state (as a reader in another process) until the cursor reaches
    ``position``; returns the run directory."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert export.poll() is None, "the export ended before it could be killed"
        for state in (out / "_runs").glob("*/state.db"):
            try:
                _, cursors = state_of(state.parent)
            except sqlite3.Error:
                continue
            if cursors.get("contacts", -1) >= position:
                return state.parent
        time.sleep(0.01)
    raise AssertionError("no checkpoint was committed in time")


def test_kill_9_mid_export_then_resume_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(SPEC, encoding="utf-8")
    out = tmp_path / "out"
    sandbox, env = serve_sandbox(tmp_path)
    try:
        export = subprocess.Popen(
            [*CLI, "run", "spec.toml", "--log-format", "json"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        run_dir = wait_for_checkpoints(export, out, position=3)  # of pages 0..19
        export.send_signal(signal.SIGKILL)
        assert export.wait(timeout=30) == -signal.SIGKILL
        status, cursors = state_of(run_dir)
        assert status == "running" and 3 <= cursors["contacts"] < 19  # it never got to say more
        assert visible_files(out) == []

        resumed = subprocess.run(
            [*CLI, "run", "spec.toml", "--resume", str(run_dir.relative_to(tmp_path))],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        assert state_of(run_dir)[0] == "done"

        reference = tmp_path / "reference"
        spec = load_spec(tmp_path / "spec.toml")
        asyncio.run(run_export(job_from_spec(spec, env, out=reference)))  # type: ignore[arg-type]
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait(timeout=30)

    assert read_manifest(out / "manifest.json").run_id == run_dir.name
    assert {t: m.rows for t, m in read_manifest(out / "manifest.json").tables.items()} == {
        "contacts": 1000,
        "activities": 1500,
        "sales": 250,
    }
    assert_same_export(out, reference)
    assert not (run_dir / "staging").exists()
