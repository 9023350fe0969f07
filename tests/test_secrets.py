"""No secret ever leaves the process: not in a log line, an output file, a state database or an
exception's text.

Every pipeline runs against emulators with distinctive credentials, under 5% faults of every kind
and a SalesNexus token lifetime short enough to force several logins: exports (Parquet and CSV),
an import, migrations both ways, and failures (refused credentials, an exhausted retry budget).
In-process runs are logged at DEBUG (caplog); the CLI runs in subprocesses with
``-v --log-format json``. The secrets searched for are the SALESmanago API key, API secret and
``sha``, the SalesNexus password and permanent token, and every login token the emulator issued
(read from the emulator as it issues them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.clients import RetryPolicy
from etl.pipeline.export import ExportJob, run_export
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.migrate import MigrationJob, run_migration
from etl.sandbox import FaultConfig, SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from tests.support import sm_config, sn_config

ROOT = Path(__file__).resolve().parent.parent
CLEAN = ROOT / "sample_data" / "contacts_clean.csv"
CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]

FAULTY = SandboxConfig(
    contacts=120,
    activities=200,
    sales=60,
    faults=FaultConfig.uniform(0.05, seed=11),
    token_ttl=0.4,
)
SM_CREDENTIALS = {
    "client_id": "secrets-test-client",
    "api_key": "k3y-9f1c2e7a5b0d",
    "api_secret": "s3cr3t-4d8e0b6c1a2f",
    "owner": "owner@secrets.example",
}
SN_PASSWORD = "pa55-7e2b9c4f1d6a"
SN_PERMANENT_TOKEN = "perm-3c5a8e1f7b9d"
WRONG_PASSWORD = "wr0ng-8a1d5f3c7e2b"
WRONG_SECRET = "wr0ng-s3cr3t-6b4e2a9d"
TWO_ATTEMPTS = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, max_retry_after=0.1)


@dataclass
class Emulators:
    sm: SalesManagoEmulator
    sn: SalesNexusEmulator
    tokens: set[str] = field(default_factory=set)

    def secrets(self) -> dict[str, str]:
        creds = self.sm.credentials
        found = {
            "SALESmanago api key": creds.api_key,
            "SALESmanago api secret": creds.api_secret,
            "SALESmanago sha": creds.sha,
            "SalesNexus password": self.sn.credentials.password,
            "SalesNexus permanent token": self.sn.credentials.permanent_token,
            "wrong password": WRONG_PASSWORD,
            "wrong api secret": WRONG_SECRET,
        }
        found.update({f"SalesNexus login token {t}": t for t in sorted(self.tokens)})
        return found

    def env(self) -> dict[str, str]:
        sm, sn = self.sm.credentials, self.sn.credentials
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SALESMANAGO_", "SALESN"))},
            "SALESMANAGO_BASE_URL": self.sm.base_url,
            "SALESMANAGO_CLIENT_ID": sm.client_id,
            "SALESMANAGO_API_KEY": sm.api_key,
            "SALESMANAGO_API_SECRET": sm.api_secret,
            "SALESMANAGO_OWNER": sm.owner,
            "SALESNEXUS_BASE_URL": self.sn.base_url,
            "SALESNEXUS_EMAIL": sn.email,
            "SALESNEXUS_PASSWORD": sn.password,
        }


@contextlib.asynccontextmanager
async def emulators(config: SandboxConfig) -> AsyncIterator[Emulators]:
    """Both emulators with distinctive secrets; every login token is noted as it is issued."""
    sm = SalesManagoEmulator(config, **SM_CREDENTIALS)
    sn = SalesNexusEmulator(config, password=SN_PASSWORD, permanent_token=SN_PERMANENT_TOKEN)
    running = Emulators(sm, sn)

    async def watch() -> None:
        # A token leaves the emulator's sessions only when used after expiry (>= 0.4 s after
        # it was issued), so a 5 ms watch sees every one.
        while True:
            running.tokens.update(sn._sessions)
            await asyncio.sleep(0.005)

    async with sm, sn:
        watcher = asyncio.create_task(watch())
        try:
            yield running
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            running.tokens.update(sn._sessions)
            assert len(running.tokens) == sn.stats.logins  # every issued token was seen


# --- scanning -------------------------------------------------------------------------------------
def file_texts(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root`` as raw bytes, plus the decoded contents of Parquet files and
    SQLite databases (whose pages may compress or split what they hold)."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path), data
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            text = json.dumps(table.to_pylist(), default=str) + str(table.schema.metadata)
            yield f"{path} (decoded)", text.encode()
        elif data.startswith(b"SQLite format 3\x00"):
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                yield f"{path} (dump)", "\n".join(db.iterdump()).encode()
            finally:
                db.close()


def leaks(secrets: dict[str, str], where: str, data: bytes | str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [f"{name} in {where}" for name, value in secrets.items() if value.encode() in raw]


def exception_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)


def record_texts(records: list[logging.LogRecord]) -> Iterator[tuple[str, str]]:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for record in records:
        where = f"log record {record.name}:{record.lineno}"
        yield where, formatter.format(record)
        yield where, repr(vars(record))


# --- in-process runs ------------------------------------------------------------------------------
async def test_no_secret_in_logs_outputs_state_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with emulators(FAULTY) as running:
        sm, sn = sm_config(running.sm), sn_config(running.sn)
        await run_export(ExportJob("sn_export", "salesnexus", sn, tmp_path / "export_sn"))
        await run_export(
            ExportJob("sm_export", "salesmanago", sm, tmp_path / "export_sm", fmt="csv")
        )
        imported = await run_import(
            ImportJob("import", CLEAN, "salesnexus", sn, tmp_path / "import", unmapped="ignore")
        )
        await run_migration(
            MigrationJob("sm_to_sn", "salesmanago", sm, "salesnexus", sn, tmp_path / "to_sn")
        )
        await run_migration(
            MigrationJob("sn_to_sm", "salesnexus", sn, "salesmanago", sm, tmp_path / "to_sm")
        )

        # Failures: refused credentials on both sides, an interrupted migration, a refused resume.
        wrong_sn = replace(sn, password=type(sn.password)(WRONG_PASSWORD))  # type: ignore[arg-type]
        wrong_sm = replace(sm, api_secret=type(sm.api_secret)(WRONG_SECRET))
        for job in (
            ExportJob("refused_sn", "salesnexus", wrong_sn, tmp_path / "refused_sn"),
            ExportJob("refused_sm", "salesmanago", wrong_sm, tmp_path / "refused_sm"),
        ):
            with pytest.raises(Exception) as caught:
                await run_export(job)
            errors.append(caught.value)
        running.sm.config = replace(FAULTY, faults=FaultConfig(server_error=1.0))
        failing = MigrationJob(
            "interrupted",
            "salesnexus",
            sn,
            "salesmanago",
            replace(sm, retry=TWO_ATTEMPTS),
            tmp_path / "interrupted",
        )
        for job in (failing, failing):  # the second is refused: an unfinished run is there
            with pytest.raises(Exception) as caught:
                await run_migration(job)
            errors.append(caught.value)
        running.sm.config = FAULTY

    assert imported.details["loaded"] > 0
    assert running.sn.stats.logins >= 3  # the short lifetime forced fresh tokens
    assert sum(running.sn.stats.faults.values()) > 0 and sum(running.sm.stats.faults.values()) > 0
    assert [type(e).__name__ for e in errors] == [
        "AuthenticationError",
        "AuthenticationError",
        "RunInterrupted",
        "ResumeError",
    ]
    secrets = running.secrets()
    found: list[str] = []
    for where, text in record_texts(caplog.records):
        found += leaks(secrets, where, text)
    for where, data in file_texts(tmp_path):
        found += leaks(secrets, where, data)
    for error in errors:
        found += leaks(secrets, f"exception {type(error).__name__}", exception_text(error))
    assert found == []
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # debug logging was on
    assert (tmp_path / "interrupted" / "state.db").exists()  # scanned, with the others


# --- the CLI, JSON logs ---------------------------------------------------------------------------
MIGRATE_SPEC = """
[pipeline]
name = "cli_migration"
kind = "migrate"

[source]
crm = "salesmanago"
base_url = "${SALESMANAGO_BASE_URL}"
client_id = "${SALESMANAGO_CLIENT_ID}"
api_key = "${SALESMANAGO_API_KEY}"
api_secret = "${SALESMANAGO_API_SECRET}"
owner = "${SALESMANAGO_OWNER}"

[source.pacing]
rate = 500.0

[target]
crm = "salesnexus"
base_url = "${SALESNEXUS_BASE_URL}"
email = "${SALESNEXUS_EMAIL}"
password = "${SALESNEXUS_PASSWORD}"

[target.pacing]
rate = 500.0

[destination]
path = "migration"
"""


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def test_no_secret_in_the_cli_json_logs_or_outputs(tmp_path: Path) -> None:
    spec = tmp_path / "migrate.toml"
    spec.write_text(MIGRATE_SPEC)
    small = tmp_path / "contacts.csv"
    small.write_text("".join(CLEAN.read_text(encoding="utf-8").splitlines(True)[:41]))
    # The CLI paces its import at 5 requests/s and backs off for up to seconds: a token must
    # outlive a login, a paced wait and a retry, or the replayed call is refused again.
    config = replace(FAULTY, contacts=60, activities=100, sales=30, token_ttl=2.0)
    json_logs = ["-v", "--log-format", "json"]
    async with emulators(config) as running:
        env = running.env()
        wrong = {**env, "SALESNEXUS_PASSWORD": WRONG_PASSWORD}
        results = await asyncio.gather(
            run_cli(
                "export",
                "--from",
                "salesnexus",
                "--rate",
                "500",
                "--out",
                "export",
                *json_logs,
                env=env,
                cwd=tmp_path,
            ),
            run_cli(
                "import",
                str(small),
                "--to",
                "salesnexus",
                "--out",
                "import",
                "--unmapped",
                "ignore",
                *json_logs,
                env=env,
                cwd=tmp_path,
            ),
            run_cli("run", str(spec), *json_logs, env=env, cwd=tmp_path),
            run_cli(
                "export",
                "--from",
                "salesnexus",
                "--out",
                "refused",
                *json_logs,
                env=wrong,
                cwd=tmp_path,
            ),
        )
    codes = [code for code, _, _ in results]
    assert codes[:3] in ([0, 0, 0], [0, 0, 5], [0, 5, 0], [0, 5, 5]), results  # 5: rows refused
    assert codes[3] == 3  # refused credentials
    assert "authentication" in results[3][2].lower() or "refused" in results[3][2].lower()
    secrets = running.secrets()
    found: list[str] = []
    debug_lines = 0
    for index, (_, stdout, stderr) in enumerate(results):
        for number, line in enumerate(stderr.splitlines(), start=1):
            found += leaks(secrets, f"run {index} stderr line {number}", line)
            if line.startswith("{"):
                debug_lines += json.loads(line)["level"] == "debug"
        found += leaks(secrets, f"run {index} stdout", stdout)
        assert "Traceback" not in stderr
    for where, data in file_texts(tmp_path):
        found += leaks(secrets, where, data)
    assert found == []
    assert debug_lines > 0  # -v was honoured: the scan covered debug output
    assert running.sn.stats.logins >= 3  # a token per CLI run that reached SalesNexus
