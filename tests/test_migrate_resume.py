"""Resumable migrations: a run stopped half way (retry budget, cancellation, ``kill -9``) is
continued with ``resume`` and ends exactly like an uninterrupted run, with nothing written twice.

Every comparison is by content: target ids the emulators draw at random (new SALESmanago contacts,
PURCHASE event ids) are replaced by what they point at.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from etl.cli.sandbox_cmd import sandbox_environment
from etl.clients import (
    AuthenticationError,
    Pacing,
    RetryPolicy,
    SalesManagoClient,
    SalesManagoConfig,
)
from etl.pipeline.migrate import MigrationJob, fingerprint, run_migration
from etl.pipeline.run import RunInterrupted, RunProgress
from etl.pipeline.state import STATE_FILE, ResumeError
from etl.sandbox import FaultConfig, Sandbox, SandboxConfig
from tests.support import FAST_RETRY, sm_config, sn_config

SEEDED = SandboxConfig(contacts=150, activities=300, sales=80)
TWO_ATTEMPTS = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, max_retry_after=0.1)

Snapshot = dict[str, dict[str, Any]]


# --- jobs ---------------------------------------------------------------------------------------
def sn_to_sm(sb: Sandbox, out: Path, **kw: Any) -> MigrationJob:
    target = sm_config(sb.salesmanago, retry=kw.pop("retry", FAST_RETRY))
    return MigrationJob(
        pipeline="sn_to_sm",
        source_crm="salesnexus",
        source=sn_config(sb.salesnexus),
        target_crm="salesmanago",
        target=target,
        out=out,
        **kw,
    )


def sm_to_sn(sb: Sandbox, out: Path, **kw: Any) -> MigrationJob:
    return MigrationJob(
        pipeline="sm_to_sn",
        source_crm="salesmanago",
        source=sm_config(sb.salesmanago),
        target_crm="salesnexus",
        target=sn_config(sb.salesnexus),
        out=out,
        **kw,
    )


# --- reading outcomes ---------------------------------------------------------------------------
def crosswalk_rows(out: Path) -> list[dict[str, str]]:
    return pq.read_table(out / "crosswalk.parquet").to_pylist()


def rejects_text(out: Path) -> str:
    return (out / "rejects.csv").read_text(encoding="utf-8")


def state_status(out: Path) -> str:
    db = sqlite3.connect(out / STATE_FILE)
    try:
        return db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0]
    finally:
        db.close()


def done_records(out: Path) -> int:
    """Answers recorded so far in a live run's state (read-only, beside the writer)."""
    path = out / STATE_FILE
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute(
                "SELECT COUNT(*) FROM entries WHERE namespace = 'records' "
                "AND key NOT LIKE 'contacts:%' AND value LIKE '%\"done\"%'"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0])


async def sm_snapshot(config: SalesManagoConfig) -> tuple[Snapshot, dict[str, str]]:
    """Every SALESmanago contact by email, without the ids and times the emulator stamps, and
    every target id (contact, event, task) -> what it stands for."""
    contacts: list[dict[str, Any]] = []
    async with SalesManagoClient(config) as client:
        page = 0
        while True:
            answer = await client.paginated_contacts(page, 1000)
            contacts.extend(answer.contacts)
            if not answer.has_more:
                break
            page += 1
    snapshot: Snapshot = {}
    meaning: dict[str, str] = {}
    for contact in contacts:
        email = contact["email"].lower()
        meaning[contact["id"]] = f"contact {email}"
        events = []
        for event in contact["contactExtEvents"]:
            content = json.dumps({k: v for k, v in event.items() if k != "eventId"}, sort_keys=True)
            meaning[event["eventId"]] = f"event of {email}: {content}"
            events.append(content)
        for task in contact["contactTasks"]:
            meaning[task["id"]] = f"task {task['id']}"
        skip = {"id", "createdOn", "modifiedOn", "contactExtEvents", "contactTasks"}
        plain = {k: v for k, v in contact.items() if k not in skip}
        plain["contactExtEvents"] = sorted(events)
        plain["contactTags"] = [  # a tag's createdOn is when it was written
            {k: v for k, v in tag.items() if k != "createdOn"} for tag in contact["contactTags"]
        ]
        plain["contactTasks"] = sorted(contact["contactTasks"], key=lambda t: t["id"])
        snapshot[email] = plain
    return snapshot, meaning


def crosswalk_contents(out: Path, meaning: dict[str, str]) -> list[tuple[str, str, str, str]]:
    return [
        (r["table"], r["source_id"], meaning[r["target_id"]], r["target_kind"])
        for r in crosswalk_rows(out)
    ]


def assert_no_duplicate_events(snapshot: Snapshot) -> None:
    for email, contact in snapshot.items():
        events = contact["contactExtEvents"]
        assert len(events) == len(set(events)), f"duplicate events for {email}"


async def reference_run(tmp: Path) -> tuple[list[tuple[str, str, str, str]], str, Snapshot]:
    """An uninterrupted migration on a fresh sandbox: crosswalk contents, rejects, target."""
    async with Sandbox(SEEDED) as fresh:
        out = tmp / "reference"
        await run_migration(sn_to_sm(fresh, out))
        snapshot, meaning = await sm_snapshot(sm_config(fresh.salesmanago))
    return crosswalk_contents(out, meaning), rejects_text(out), snapshot


# --- in-process interruptions -------------------------------------------------------------------
async def stop_when(progress: RunProgress, rows: int, action: Any) -> None:
    while progress.rows["activities"] + progress.rows["sales"] < rows:
        await asyncio.sleep(0.001)
    action()


@pytest.mark.parametrize("how", ["retry budget", "cancellation"])
async def test_an_interrupted_migration_resumes_to_the_uninterrupted_result(
    how: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    async with Sandbox(SEEDED) as sandbox:
        progress = RunProgress("sn_to_sm")
        job = sn_to_sm(sandbox, out, retry=TWO_ATTEMPTS)
        migration = asyncio.create_task(run_migration(job, progress))
        failing = replace(SEEDED, faults=FaultConfig(server_error=1.0))

        def interrupt() -> None:
            if how == "retry budget":
                sandbox.salesmanago.config = failing  # every write now answers 5xx
            else:
                migration.cancel()

        watcher = asyncio.create_task(stop_when(progress, 120, interrupt))
        if how == "retry budget":
            with pytest.raises(RunInterrupted) as caught:
                await migration
            assert caught.value.run_dir == out
            assert "kept failing or throttling" in str(caught.value)
        else:
            with pytest.raises(asyncio.CancelledError):
                await migration
        await watcher
        assert state_status(out) == "interrupted"
        assert not (out / "crosswalk.parquet").exists()
        assert 120 <= done_records(out) < 300

        # A new run is refused in the directory, with the way to resume it.
        with pytest.raises(ResumeError, match=f"resume it with --resume {out}"):
            await run_migration(sn_to_sm(sandbox, out))

        sandbox.salesmanago.config = SEEDED
        summary = await run_migration(replace(sn_to_sm(sandbox, out), resume=True))
        assert summary.details["attempt"] == 2
        assert state_status(out) == "done"
        snapshot, meaning = await sm_snapshot(sm_config(sandbox.salesmanago))
        moved, refused = crosswalk_contents(out, meaning), rejects_text(out)

    expected_moved, expected_refused, expected_target = await reference_run(tmp_path)
    assert moved == expected_moved
    assert refused == expected_refused
    assert_no_duplicate_events(snapshot)
    assert snapshot == expected_target
    assert summary.rows == {
        t: sum(1 for row in expected_moved if row[0] == t)
        for t in ("contacts", "activities", "sales")
    }


def mark_unanswered(out: Path) -> int:
    """Turn the finished run in ``out`` into one killed right after its writes reached the
    target and before their answers were recorded: every activity and sale is only ``sent``."""
    db = sqlite3.connect(out / STATE_FILE)
    try:
        with db:
            db.execute("UPDATE meta SET value = 'interrupted' WHERE key = 'status'")
            changed = db.execute(
                'UPDATE entries SET value = \'{"status": "sent"}\' '
                "WHERE namespace = 'records' AND key NOT LIKE 'contacts:%'"
            ).rowcount
    finally:
        db.close()
    (out / "crosswalk.parquet").unlink()
    (out / "rejects.csv").unlink()
    return changed


async def test_unanswered_writes_are_found_in_salesmanago_not_sent_again(tmp_path: Path) -> None:
    async with Sandbox(SEEDED) as sandbox:
        sm = sandbox.salesmanago.store
        await run_migration(sn_to_sm(sandbox, tmp_path))
        moved, refused = crosswalk_rows(tmp_path), rejects_text(tmp_path)
        events = sum(len(c["contactExtEvents"]) for c in sm.contacts.values())
        tasks = sum(len(c["contactTasks"]) for c in sm.contacts.values())
        purchases = sum(1 for r in moved if r["target_kind"] == "purchase")
        unanswered = mark_unanswered(tmp_path)
        calls_before = dict(sandbox.salesmanago.stats.calls)

        summary = await run_migration(replace(sn_to_sm(sandbox, tmp_path), resume=True))

        calls = {
            k: v - calls_before.get(k, 0)
            for k, v in sandbox.salesmanago.stats.calls.items()
            if v != calls_before.get(k, 0)
        }
        assert sum(len(c["contactExtEvents"]) for c in sm.contacts.values()) == events
        assert sum(len(c["contactTasks"]) for c in sm.contacts.values()) == tasks
        assert "contact/addContactExtEvent" not in calls  # every event was found
        assert "contact/batchupsert" not in calls  # contacts were recorded: not sent again
        assert calls["contact/updateTask"] == unanswered - purchases  # idempotent: re-sent
        assert summary.details["adopted"] == purchases
        assert crosswalk_rows(tmp_path) == moved
        assert rejects_text(tmp_path) == refused


async def test_unanswered_writes_are_found_in_salesnexus_not_sent_again(tmp_path: Path) -> None:
    async with Sandbox(SEEDED) as sandbox:
        sn = sandbox.salesnexus.store
        await run_migration(sm_to_sn(sandbox, tmp_path))
        moved, refused = crosswalk_rows(tmp_path), rejects_text(tmp_path)
        counts = (len(sn.contacts), len(sn.activities), len(sn.notes), len(sn.sales))
        unanswered = mark_unanswered(tmp_path)
        writes_before = sandbox.salesnexus.stats.writes

        summary = await run_migration(replace(sm_to_sn(sandbox, tmp_path), resume=True))

        assert sandbox.salesnexus.stats.writes == writes_before  # nothing sent twice
        assert (len(sn.contacts), len(sn.activities), len(sn.notes), len(sn.sales)) == counts
        assert summary.details["adopted"] == unanswered
        assert {(r["table"], r["source_id"]) for r in crosswalk_rows(tmp_path)} == {
            (r["table"], r["source_id"]) for r in moved
        }
        # Records of identical content may swap ids; each target record is adopted once.
        assert sorted(r["target_id"] for r in crosswalk_rows(tmp_path)) == sorted(
            r["target_id"] for r in moved
        )
        assert rejects_text(tmp_path) == refused


async def test_a_resume_with_another_spec_is_refused(tmp_path: Path) -> None:
    async with Sandbox(SEEDED) as sandbox:
        progress = RunProgress("sn_to_sm")
        migration = asyncio.create_task(run_migration(sn_to_sm(sandbox, tmp_path), progress))
        watcher = asyncio.create_task(stop_when(progress, 20, migration.cancel))
        with pytest.raises(asyncio.CancelledError):
            await migration
        await watcher

        job = replace(sn_to_sm(sandbox, tmp_path), resume=True)
        with pytest.raises(ResumeError, match="the tables changed since the run started"):
            await run_migration(replace(job, tables=("contacts", "activities")))
        with pytest.raises(ResumeError, match="the property map changed"):
            await run_migration(replace(job, property_map={"Lead Source": "lead"}))
        other_target = replace(job.target, owner="someone.else@sandbox.example")
        with pytest.raises(ResumeError, match="the target connection changed"):
            await run_migration(replace(job, target=other_target))
        # Secrets are no part of the fingerprint: rotating one does not block a resume.
        marks = json.dumps(fingerprint(job))
        creds = sandbox.salesmanago.credentials
        for secret in (creds.api_key, creds.api_secret, sandbox.salesnexus.credentials.password):
            assert secret not in marks
        slower = Pacing(rate=None, max_in_flight=4)
        summary = await run_migration(replace(job, target=replace(job.target, pacing=slower)))
        assert summary.details["attempt"] == 2
        assert state_status(tmp_path) == "done"


async def test_a_new_run_refused_before_writing_leaves_no_state(tmp_path: Path) -> None:
    async with Sandbox(SEEDED) as sandbox:
        job = sn_to_sm(sandbox, tmp_path)
        refused = replace(job, target=replace(job.target, api_secret=SecretStr("not-it")))
        with pytest.raises(AuthenticationError):
            await run_migration(refused)
        assert not (tmp_path / STATE_FILE).exists()  # nothing to resume: run it again
        summary = await run_migration(job)
        assert summary.details["attempt"] == 1
        assert state_status(tmp_path) == "done"


# --- kill -9 of a CLI run, sandbox in its own process -------------------------------------------
SANDBOX_FLAGS = ["--seed=42", "--contacts=150", "--activities=300", "--sales=80"]
SPEC = """
[pipeline]
name = "kill_and_resume"
kind = "migrate"

[source]
crm = "salesnexus"
base_url = "${SALESNEXUS_BASE_URL}"
email = "${SALESNEXUS_EMAIL}"
password = "${SALESNEXUS_PASSWORD}"

[target]
crm = "salesmanago"
base_url = "${SALESMANAGO_BASE_URL}"
client_id = "${SALESMANAGO_CLIENT_ID}"
api_key = "${SALESMANAGO_API_KEY}"
api_secret = "${SALESMANAGO_API_SECRET}"
owner = "${SALESMANAGO_OWNER}"

[target.pacing]
rate = 200.0
max_in_flight = 4

[destination]
path = "unused"
"""
RESUME_DRIVER = """
import asyncio, dataclasses, os, sys
from pathlib import Path
from etl.pipeline.jobs import job_from_spec, run_job
from etl.pipeline.spec import load_spec
job = job_from_spec(load_spec(Path(sys.argv[1])), os.environ, out=Path(sys.argv[2]))
asyncio.run(run_job(dataclasses.replace(job, resume=True)))
"""
CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]


@contextlib.contextmanager
def sandbox_process(*flags: str) -> Iterator[dict[str, dict[str, str]]]:
    """``crm-etl sandbox --json`` in a child process; yields its connection line."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [*CLI, "sandbox", "--json", *flags],
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline() if ready else b""
            if not line:
                errors.seek(0)
                pytest.fail(f"the sandbox did not start: {errors.read().decode()[-2000:]}")
            yield json.loads(line)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def sandbox_env(info: dict[str, dict[str, str]]) -> dict[str, str]:
    return {**os.environ, **sandbox_environment(info)}


def cli_has_resume() -> bool:
    from etl.cli.main import cli

    run = cli.commands["run"]
    return any("--resume" in getattr(param, "opts", ()) for param in run.params)


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[tuple[list[Any], str, Snapshot]]:
    yield await reference_run(tmp_path)


async def test_kill_9_midway_then_resume_writes_nothing_twice(
    tmp_path: Path, reference: tuple[list[Any], str, Snapshot]
) -> None:
    spec = tmp_path / "migrate.toml"
    spec.write_text(SPEC)
    out = tmp_path / "run"
    with sandbox_process(*SANDBOX_FLAGS, "--latency=0.005") as info:
        env = sandbox_env(info)
        first = subprocess.Popen(
            [*CLI, "run", str(spec), "--out", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # The first wave of answers is committed at once; kill while the next one is in flight,
        # so some of its writes have reached the target without their answers being recorded.
        deadline = time.monotonic() + 60
        while done_records(out) < 250 and first.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert first.poll() is None, "the migration ended before it could be killed"
        first.kill()  # SIGKILL: no handler runs, nothing is flushed
        first.wait()
        assert first.stderr is not None
        first.stderr.close()
        killed_at = done_records(out)
        assert 250 <= killed_at < 300
        assert state_status(out) == "running"  # killed: nobody marked it
        assert not (out / "crosswalk.parquet").exists()

        if cli_has_resume():
            command = [*CLI, "run", str(spec), "--out", str(out), "--resume", str(out)]
        else:  # the CLI flag lands with the CLI's own change; the job field is what counts
            command = [sys.executable, "-c", RESUME_DRIVER, str(spec), str(out)]
        resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert resumed.returncode in (0, 5), resumed.stderr[-3000:]  # 5: rows were rejected
        assert "Traceback" not in resumed.stderr
        assert state_status(out) == "done"

        target = sm_config_from(info)
        snapshot, meaning = await sm_snapshot(target)

    expected_moved, expected_refused, expected_target = reference
    assert crosswalk_contents(out, meaning) == expected_moved
    assert rejects_text(out) == expected_refused
    assert_no_duplicate_events(snapshot)
    assert snapshot == expected_target
    summary = json.loads((out / "summary.json").read_text())
    assert summary["details"]["attempt"] == 2
    with (out / "rejects.csv").open(newline="", encoding="utf-8") as fh:
        assert all(row["status"] == "rejected" for row in csv.DictReader(fh))


def sm_config_from(info: dict[str, dict[str, str]]) -> SalesManagoConfig:
    sm = info["salesmanago"]
    return SalesManagoConfig(
        client_id=sm["client_id"],
        api_key=SecretStr(sm["api_key"]),
        api_secret=SecretStr(sm["api_secret"]),
        owner=sm["owner"],
        base_url=sm["base_url"],
        pacing=Pacing(rate=None),
    )
