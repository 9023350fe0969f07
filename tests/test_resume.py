"""Resumable imports end to end: real processes killed, interrupted and resumed.

Every test serves the sandbox from another process (``crm-etl sandbox --json``) and runs the CLI
in subprocesses, so a ``kill -9`` or a SIGINT hits a real run. The final outputs are compared
byte for byte with those of an uninterrupted import of the same file into a fresh sandbox (the
sandbox derives a new contact's id from its seed and email, whatever order the concurrent chunks
arrive in, so equal outcomes give equal files).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import logging
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from etl.cli.main import cli
from etl.clients import RetryPolicy, SalesManagoClient, SalesManagoConfig
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.run import RunInterrupted
from etl.pipeline.state import ResumeError
from etl.sandbox import FaultConfig, SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from etl.transform.contact_input import MappingError
from tests.support import FAST_RETRY, UNPACED, sm_config, sn_config
from tests.test_import import CLEAN, DE, MESSY

CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]
ROWS = 20_000
CHUNKS = 20  # write chunks of 1000 rows (duplicates dropped from them)
MAX_IN_FLIGHT = 8  # the default pacing's cap on requests in flight
RATE = 20  # requests per second: an import takes about a second of writes
RESUMABLE, PARTIAL, USAGE = 75, 5, 2
SANDBOX = ["--contacts", "0", "--activities", "0", "--sales", "0", "--latency", "0.01"]


# --- the input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BigFile:
    path: Path
    valid_emails: set[str]  # what the CRM must hold afterwards, each exactly once
    invalid_lines: list[int]
    duplicate_lines: list[int]  # rows whose email a later row repeats (the last one wins)


def write_big_csv(path: Path, rows: int = ROWS) -> BigFile:
    """``rows`` contacts; every 97th has an invalid email, every 89th repeats an earlier row's
    email in other letter case (so the earlier row is dropped as a duplicate)."""
    emails: dict[str, int] = {}
    invalid: list[int] = []
    duplicates: list[int] = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Last Name", "Company", "City"])
        for i in range(rows):
            line = i + 2
            if i % 97 == 13:
                email = f"person{i}-at-example.org"
                invalid.append(line)
            elif i % 89 == 7 and i > 100:
                email = f"Person{i - 50}@Example.org"
                if email.lower() in emails:
                    duplicates.append(emails[email.lower()])
                emails[email.lower()] = line
            else:
                email = f"person{i}@example.org"
                emails[email] = line
            city = ("Berlin", "Kraków", "Lyon", "Austin", "Porto")[i % 5]
            writer.writerow([email, f"First{i}", f"Last{i % 1000}", f"Co {i % 50}", city])
    return BigFile(path, set(emails), invalid, sorted(duplicates))


# --- processes ------------------------------------------------------------------------------------


class SandboxProcess:
    """``crm-etl sandbox --json`` in another process: its connection info, stats and faults."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "sandbox", "--json", *SANDBOX, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.info: dict[str, str] = json.loads(self.proc.stdout.readline())["salesmanago"]

    @property
    def base_url(self) -> str:
        return self.info["base_url"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SALESMANAGO_BASE_URL=self.info["base_url"],
            SALESMANAGO_CLIENT_ID=self.info["client_id"],
            SALESMANAGO_API_KEY=self.info["api_key"],
            SALESMANAGO_API_SECRET=self.info["api_secret"],
            SALESMANAGO_OWNER=self.info["owner"],
        )
        return env

    def upsert_calls(self) -> int:
        with urllib.request.urlopen(f"{self.base_url}/_sandbox/stats", timeout=10) as answer:
            stats = json.loads(answer.read())
        return int(stats["calls"].get("contact/batchupsert", 0))

    def settled_upsert_calls(self) -> int:
        """The count once a request the dead client had fully sent has been handled too."""
        previous = self.upsert_calls()
        while True:
            time.sleep(0.2)
            current = self.upsert_calls()
            if current == previous:
                return current
            previous = current

    def set_faults(self, **faults: float) -> None:
        request = urllib.request.Request(
            f"{self.base_url}/_sandbox/faults",
            data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def emails(self) -> list[str]:
        """Every contact's email in the store, read back over the API."""
        config = SalesManagoConfig(
            client_id=self.info["client_id"],
            api_key=SecretStr(self.info["api_key"]),
            api_secret=SecretStr(self.info["api_secret"]),
            owner=self.info["owner"],
            base_url=self.base_url,
            pacing=UNPACED,
            retry=FAST_RETRY,
        )

        async def read() -> list[str]:
            emails: list[str] = []
            async with SalesManagoClient(config) as client:
                page = 0  # pages count from 0
                while True:
                    answer = await client.paginated_contacts(page)
                    emails.extend(str(c["email"]) for c in answer.contacts)
                    if not answer.has_more:
                        return emails
                    page += 1

        return asyncio.run(read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: str


def run(args: list[str], env: dict[str, str]) -> Ran:
    """The CLI in this process (no start-up cost): for runs nobody needs to kill."""
    result = CliRunner().invoke(cli, args, env=env)
    return Ran(result.exit_code, result.stderr)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """In-process commands reconfigure the root logger; put pytest's handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def import_args(big: BigFile, out: Path) -> list[str]:
    return ["import", str(big.path), "--to", "salesmanago", "--out", str(out), "--rate", str(RATE)]


def committed_chunks(out: Path) -> int:
    try:
        db = sqlite3.connect(f"{(out / 'state.db').as_uri()}?mode=ro", uri=True)
        try:
            query = "SELECT COUNT(*) FROM chunks WHERE status = 'committed'"
            return int(db.execute(query).fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def state_status(out: Path) -> str:
    db = sqlite3.connect(f"{(out / 'state.db').as_uri()}?mode=ro", uri=True)
    try:
        return str(db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0])
    finally:
        db.close()


def wait_for_chunks(out: Path, proc: subprocess.Popen[str], at_least: int) -> None:
    deadline = time.monotonic() + 30
    while committed_chunks(out) < at_least:
        assert proc.poll() is None, "the import ended before it could be interrupted"
        assert time.monotonic() < deadline, "no chunk was committed in time"
        time.sleep(0.05)


def resume_hint(stderr: str) -> list[str]:
    """The command the CLI printed to resume the run, as arguments for :data:`CLI`."""
    lines = [line.strip() for line in stderr.splitlines()]
    command = lines[lines.index("Resume it with:") + 1]
    words = shlex.split(command)
    assert words[0] == "crm-etl"
    return words[1:]


def summary_details(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))["details"]


# --- the reference: an uninterrupted import of the same file ------------------------------------


@dataclass
class Reference:
    big: BigFile
    out: Path
    proc: subprocess.Popen[str]
    sandbox: SandboxProcess
    done: bool = False

    def wait(self) -> Path:
        """The reference run's output directory, once it finished (it runs in the background
        while the tests interrupt their own runs)."""
        if not self.done:
            _, stderr = self.proc.communicate(timeout=60)
            assert self.proc.returncode == PARTIAL, stderr
            assert sorted(self.sandbox.emails()) == sorted(self.big.valid_emails)
            self.sandbox.stop()
            self.done = True
        return self.out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    root = tmp_path_factory.mktemp("reference")
    big = write_big_csv(root / "big.csv")
    sandbox = SandboxProcess(root)
    out = root / "out"
    proc = start(import_args(big, out), root, sandbox.env())
    ref = Reference(big, out, proc, sandbox)
    try:
        yield ref
    finally:
        if not ref.done:
            proc.kill()
            proc.wait()
            sandbox.stop()


def assert_same_as_reference(out: Path, reference: Reference, sandbox: SandboxProcess) -> None:
    """The resumed run's files are byte-identical to the uninterrupted run's, and the CRM holds
    every valid row exactly once."""
    expected = reference.wait()
    for name in ("success.csv", "rejects.csv"):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    emails = sandbox.emails()
    assert len(emails) == len(set(emails))  # no contact twice
    assert set(emails) == reference.big.valid_emails
    details = summary_details(out)
    big = reference.big
    loaded = len(big.valid_emails)
    assert (details["input"], details["loaded"]) == (ROWS, loaded)
    assert (details["rejected"], details["duplicates"]) == (
        len(big.invalid_lines),
        len(big.duplicate_lines),
    )
    with (out / "rejects.csv").open(newline="", encoding="utf-8") as fh:
        rejects = list(csv.DictReader(fh))
    assert [int(r["line"]) for r in rejects if r["stage"] == "validation"] == big.invalid_lines
    assert [int(r["line"]) for r in rejects if r["stage"] == "duplicate"] == big.duplicate_lines
    assert state_status(out) == "done"


# --- the tests ----------------------------------------------------------------------------------


def test_kill_9_then_resume_sends_only_what_was_not_committed(
    tmp_path: Path, reference: Reference
) -> None:
    sandbox = SandboxProcess(tmp_path)
    try:
        out = tmp_path / "out"
        args = import_args(reference.big, out)
        proc = start(args, tmp_path, sandbox.env())
        wait_for_chunks(out, proc, at_least=3)
        proc.kill()  # SIGKILL: no cleanup at all
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        committed = committed_chunks(out)
        assert 3 <= committed < CHUNKS
        sent_before = sandbox.settled_upsert_calls()
        assert committed <= sent_before <= committed + MAX_IN_FLIGHT

        done = run([*args, "--resume", str(out)], sandbox.env())
        assert done.returncode == PARTIAL, done.stderr  # finished; some rows were rejected
        sent_after = sandbox.upsert_calls()
        details = summary_details(out)
        assert details["resumed"] is True
        assert (details["chunks"], details["chunks_skipped"]) == (CHUNKS, committed)
        assert details["chunks_sent"] == CHUNKS - committed == sent_after - sent_before
        # chunks sent twice: only those in flight when the process died
        assert 0 <= sent_after - CHUNKS == sent_before - committed <= MAX_IN_FLIGHT
        assert_same_as_reference(out, reference, sandbox)
    finally:
        sandbox.stop()


def test_sigint_stops_cleanly_and_prints_how_to_resume(
    tmp_path: Path, reference: Reference
) -> None:
    sandbox = SandboxProcess(tmp_path)
    try:
        out = tmp_path / "out"
        proc = start(import_args(reference.big, out), tmp_path, sandbox.env())
        wait_for_chunks(out, proc, at_least=2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == RESUMABLE, stderr
        assert "Traceback" not in stderr
        assert "interrupted by SIGINT" in stderr
        assert state_status(out) == "interrupted"
        committed = committed_chunks(out)
        assert 2 <= committed < CHUNKS
        hint = resume_hint(stderr)
        assert hint == [*import_args(reference.big, out), "--resume", str(out)]
        assert not (out / "success.csv").exists()  # outcome files appear only at the end

        done = run(hint, sandbox.env())
        assert done.returncode == PARTIAL, done.stderr
        assert summary_details(out)["chunks_skipped"] == committed
        assert sandbox.upsert_calls() - CHUNKS <= MAX_IN_FLIGHT
        assert_same_as_reference(out, reference, sandbox)
    finally:
        sandbox.stop()


SPEC = """\
[pipeline]
name = "big_import"
kind = "import"

[import]
input = "{input}"

[target]
crm = "salesmanago"
base_url = "${{SALESMANAGO_BASE_URL}}"
client_id = "${{SALESMANAGO_CLIENT_ID}}"
api_key = "${{SALESMANAGO_API_KEY}}"
api_secret = "${{SALESMANAGO_API_SECRET}}"
owner = "${{SALESMANAGO_OWNER}}"

[target.pacing]
rate = {rate}

[target.retry]
max_attempts = {attempts}
base_delay = 0.01
max_delay = 0.02

[destination]
path = "{out}"
"""


def write_spec(tmp_path: Path, big: BigFile, out: Path, attempts: int = 3) -> Path:
    spec = tmp_path / "import.toml"
    text = SPEC.format(input=big.path.as_posix(), out=out.as_posix(), attempts=attempts, rate=RATE)
    spec.write_text(text, encoding="utf-8")
    return spec


def test_retry_budget_exhausted_exits_75_and_resumes_once_the_crm_recovers(
    tmp_path: Path, reference: Reference
) -> None:
    sandbox = SandboxProcess(tmp_path)
    try:
        out = tmp_path / "out"
        spec = write_spec(tmp_path, reference.big, out)
        proc = start(["run", str(spec)], tmp_path, sandbox.env())
        wait_for_chunks(out, proc, at_least=2)
        sandbox.set_faults(server_error=1.0)  # an outage outlasting the retry budget
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == RESUMABLE, stderr
        assert "the CRM kept failing or throttling" in stderr and "gave up after 3" in stderr
        assert "Traceback" not in stderr
        assert state_status(out) == "interrupted"
        committed = committed_chunks(out)
        hint = resume_hint(stderr)
        assert hint == ["run", str(spec), "--resume", str(out)]

        sandbox.set_faults(server_error=0.0)  # the outage is over
        done = run(hint, sandbox.env())
        assert done.returncode == PARTIAL, done.stderr
        assert summary_details(out)["chunks_skipped"] == committed
        assert_same_as_reference(out, reference, sandbox)
    finally:
        sandbox.stop()


def test_resume_refuses_a_changed_input_and_a_finished_run(
    tmp_path: Path, reference: Reference
) -> None:
    sandbox = SandboxProcess(tmp_path, "--server-error", "1.0")
    try:
        big = write_big_csv(tmp_path / "small.csv", rows=50)
        out = tmp_path / "out"
        spec = write_spec(tmp_path, big, out, attempts=1)
        env = sandbox.env()
        failed = run(["run", str(spec)], env)
        assert failed.returncode == RESUMABLE, failed.stderr
        assert state_status(out) == "interrupted"

        again = run(["run", str(spec)], env)  # without --resume
        assert again.returncode == USAGE, again.stderr
        assert "holds an unfinished run" in again.stderr and f"--resume {out}" in again.stderr

        with big.path.open("a", encoding="utf-8") as fh:
            fh.write("late.addition@example.org,Late,Addition,Co,Berlin\n")
        changed = run(["run", str(spec), "--resume", str(out)], env)
        assert changed.returncode == USAGE, changed.stderr
        assert "the input file changed" in changed.stderr and str(big.path) in changed.stderr
        assert "Traceback" not in changed.stderr

        finished = reference.wait()
        done = run([*import_args(reference.big, finished), "--resume", str(finished)], env)
        assert done.returncode == USAGE, done.stderr
        assert "already finished" in done.stderr

        assert state_status(out) == "interrupted"  # still resumable with the original file
        assert state_status(finished) == "done"
    finally:
        sandbox.stop()


# --- in-process: the runner's side of the contract ---------------------------------------------


async def test_runner_raises_run_interrupted_and_refuses_changed_settings(tmp_path: Path) -> None:
    faults = FaultConfig(server_error=1.0)
    async with SalesManagoEmulator(SandboxConfig(contacts=0, faults=faults)) as sm:
        config = sm_config(sm, retry=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0))
        job = ImportJob("messy", MESSY, "salesmanago", config, tmp_path, options=DE)
        with pytest.raises(RunInterrupted) as caught:
            await run_import(job)
        assert caught.value.run_dir == tmp_path
        assert "gave up after 2 attempts" in caught.value.reason
        assert state_status(tmp_path) == "interrupted"
        assert not (tmp_path / "success.csv").exists()

        changed = dataclasses.replace(job, duplicates="reject", resume=True)
        with pytest.raises(ResumeError, match="the duplicates policy changed"):
            await run_import(changed)
        with pytest.raises(ResumeError, match="holds an unfinished run"):
            await run_import(job)  # a new run where an unfinished one lives

        sm.set_faults({"server_error": 0.0})
        summary = await run_import(dataclasses.replace(job, resume=True))
        stored = len(sm.store.contacts)
    assert summary.run_id == json.loads((tmp_path / "summary.json").read_text())["run_id"]
    details = summary.details
    assert (details["input"], details["loaded"], details["rejected"]) == (120, 103, 14)
    assert (details["duplicates"], details["resumed"], details["chunks_sent"]) == (3, True, 1)
    assert stored == 103 and state_status(tmp_path) == "done"
    with pytest.raises(ResumeError, match="already finished"):
        await run_import(dataclasses.replace(job, resume=True))


async def test_dry_runs_and_runs_failing_before_any_write_keep_no_state(tmp_path: Path) -> None:
    async with SalesNexusEmulator(SandboxConfig(contacts=0)) as sn:
        job = ImportJob("clean", CLEAN, "salesnexus", sn_config(sn), tmp_path, options=DE)
        with pytest.raises(MappingError):  # a property SalesNexus has no field for
            await run_import(job)
        assert not (tmp_path / "state.db").exists()  # so running again needs no --resume
        mapped = dataclasses.replace(job, mapping={"Loyalty Tier": "ignore"})
        done = await run_import(mapped)
        assert done.status == "ok" and done.details["loaded"] == 200
        summary = await run_import(dataclasses.replace(mapped, out=tmp_path / "dry", dry_run=True))
    assert summary.status == "dry-run" and summary.details["would_load"] == 200
    assert sorted(p.name for p in (tmp_path / "dry").iterdir()) == [
        "rejects.csv",
        "success.csv",
        "summary.json",
    ]


def test_cli_refuses_resume_with_dry_run_or_another_out(tmp_path: Path) -> None:
    base = ["import", str(CLEAN), "--to", "salesmanago"]
    dry = run([*base, "--dry-run", "--resume", str(tmp_path)], {})
    assert dry.returncode == USAGE
    assert "--resume cannot be combined with --dry-run" in dry.stderr
    other = run([*base, "--out", str(tmp_path / "a"), "--resume", str(tmp_path)], {})
    assert other.returncode == USAGE and "resumes in its output directory" in other.stderr
    for command in ("run", "export", "import", "migrate"):
        help_text = CliRunner().invoke(cli, [command, "--help"]).stdout
        assert "--resume RUN_DIR" in help_text, command
