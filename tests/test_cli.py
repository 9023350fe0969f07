"""``crm-etl`` end to end: subprocesses where a real process matters, CliRunner elsewhere.

Every command runs against sandbox emulators over loopback HTTP; outputs are read back and
compared with the seeded stores, computed independently of the transforms.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from etl.cli.connections import DEMO_SANDBOX
from etl.cli.main import cli
from etl.clients import SalesManagoConfig, SalesNexusConfig
from etl.pipeline.export import ExportJob, run_export
from etl.sandbox import SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from etl.sandbox.salesmanago_store import SalesManagoStore
from etl.sandbox.salesnexus_store import SalesNexusStore
from tests.support import FAST_RETRY, UNPACED, invoke
from tests.test_export import (
    TABLE_NAMES,
    Expected,
    assert_export,
    sm_expected,
    sn_expected,
    visible_files,
)

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]


def crm_etl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def sandbox_secrets() -> list[str]:
    """The default credentials every sandbox serves (the CLI must never print them)."""
    empty = SandboxConfig(contacts=0, activities=0, sales=0)
    sm = SalesManagoEmulator(empty).credentials
    sn = SalesNexusEmulator(empty).credentials
    return [sm.api_key, sm.api_secret, sm.sha, sn.password, sn.permanent_token]


def manifest_rows(root: Path) -> dict[str, int]:
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    return {table: entry["rows"] for table, entry in manifest["tables"].items()}


def counts(expected: Expected) -> dict[str, int]:
    return {table: len(rows) for table, rows in expected.items()}


# --- subprocesses -------------------------------------------------------------------------------


def test_demo_runs_every_shipped_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = crm_etl("demo", "--out", str(out), "--contacts", "300", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Run summary" in done.stdout
    for name in ("nightly_export_salesmanago", "nightly_export_salesnexus"):
        assert name in done.stdout
    config = replace(DEMO_SANDBOX, contacts=300, activities=600, sales=150)
    stores = {
        "nightly_export_salesmanago": sm_expected(SalesManagoStore(config)),
        "nightly_export_salesnexus": sn_expected(SalesNexusStore(config)),
    }
    writes = {
        "csv_to_salesmanago": "success.csv",
        "csv_to_salesnexus": "success.csv",
        "migrate_salesmanago_to_salesnexus": "crosswalk.parquet",
        "migrate_salesnexus_to_salesmanago": "crosswalk.parquet",
    }
    assert sorted(p.name for p in out.iterdir()) == sorted([*stores, *writes])
    for name, output in writes.items():
        assert (out / name / output).is_file() and name in done.stdout
    assert "input 120 = loaded 103 + rejected 14 + duplicates 3" in done.stdout
    for name, expected in stores.items():
        root = out / name
        assert manifest_rows(root) == counts(expected)
        assert (root / "_runs").is_dir()
        files = visible_files(root)
        assert [f.split("/")[0] for f in files] == sorted(TABLE_NAMES)
        assert all(f.split("/")[1].startswith("dt=") and f.endswith(".parquet") for f in files)
        assert_export(root, "parquet", expected, TABLE_NAMES)


def test_run_spec_with_json_logs_shows_no_secret(tmp_path: Path) -> None:
    spec = PIPELINES / "nightly_export_salesnexus.toml"
    out = tmp_path / "out"
    done = crm_etl(
        "run", str(spec), "--sandbox", "--out", str(out), "--log-format", "json", "-v", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    stdout_lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    stderr_lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in stderr_lines)
    assert {line["level"] for line in stderr_lines} <= {"debug", "info", "warning"}
    summaries = [line["summary"] for line in stdout_lines if "summary" in line]
    assert len(summaries) == 1
    summary = summaries[0]
    expected = counts(sn_expected(SalesNexusStore(DEMO_SANDBOX)))
    assert expected == {"contacts": 500, "activities": 1000, "sales": 250}
    assert summary["rows"] == expected
    assert summary["status"] == "ok"
    assert summary["pipeline"] == "nightly_export_salesnexus"
    assert manifest_rows(out) == expected
    for secret in sandbox_secrets():
        assert secret not in done.stdout
        assert secret not in done.stderr


async def test_sandbox_command_serves_another_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "sandbox", "--json", "--contacts", "20"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        sm, sn = info["salesmanago"], info["salesnexus"]
        assert sm["base_url"].startswith("http://127.0.0.1:")
        assert sn["base_url"].startswith("http://127.0.0.1:")
        sm_connection = SalesManagoConfig(
            client_id=sm["client_id"],
            api_key=SecretStr(sm["api_key"]),
            api_secret=SecretStr(sm["api_secret"]),
            owner=sm["owner"],
            base_url=sm["base_url"],
            pacing=UNPACED,
            retry=FAST_RETRY,
        )
        sn_connection = SalesNexusConfig(
            email=sn["email"],
            password=SecretStr(sn["password"]),
            base_url=sn["base_url"],
            pacing=UNPACED,
            retry=FAST_RETRY,
        )
        summaries = {}
        for crm, connection in (("salesmanago", sm_connection), ("salesnexus", sn_connection)):
            job = ExportJob(
                pipeline=f"remote_{crm}",
                crm=crm,  # type: ignore[arg-type]
                connection=connection,
                out=tmp_path / crm,
                page_size=7,
            )
            summaries[crm] = await run_export(job)
    finally:
        proc.terminate()
        returncode = proc.wait(timeout=10)
    assert returncode == 0
    # The other process seeded the data from the same defaults: same seed, same records.
    seeded = SandboxConfig(contacts=20)
    for crm, expected in (
        ("salesmanago", sm_expected(SalesManagoStore(seeded))),
        ("salesnexus", sn_expected(SalesNexusStore(seeded, owner_email=sn["email"]))),
    ):
        assert summaries[crm].rows == counts(expected)
        assert_export(tmp_path / crm, "parquet", expected, TABLE_NAMES)


# --- CliRunner ----------------------------------------------------------------------------------


def test_export_writes_exactly_the_requested_csv_files(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(
        runner,
        "export",
        "--from",
        "salesmanago",
        "--tables",
        "contacts,sales",
        "--format",
        "csv",
        "--out",
        str(out),
        "--sandbox",
    )
    assert result.exit_code == 0, result.output
    files = visible_files(out)
    assert [f.split("/")[0] for f in files] == ["contacts", "sales"]
    assert all(f.endswith(".csv") for f in files)
    expected = sm_expected(SalesManagoStore(DEMO_SANDBOX))
    assert manifest_rows(out) == {"contacts": 500, "sales": len(expected["sales"])}
    assert_export(out, "csv", expected, ("contacts", "sales"))


def test_export_of_an_unknown_table_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        cli,
        ["export", "--from", "salesmanago", "--tables", "contacts,deals", "--out", str(out)],
    )
    assert result.exit_code == 2
    assert "deals" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


SPEC = """\
[pipeline]
name = "cli_test"
kind = "export"

[source]
crm = "salesnexus"
base_url = "http://127.0.0.1:9/api/call-v1"
email = "person@example.org"
password = "${{CRM_ETL_TEST_MISSING}}"
{extra}
[export]
tables = ["contacts"]

[destination]
path = "{out}"
"""


def write_spec(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(extra=extra, out=(tmp_path / "out").as_posix()), encoding="utf-8")
    return path


def test_run_with_a_missing_variable_exits_3(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_ETL_TEST_MISSING", raising=False)
    result = runner.invoke(cli, ["run", str(write_spec(tmp_path))])
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)
    assert "CRM_ETL_TEST_MISSING" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_run_with_an_unknown_key_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["run", str(write_spec(tmp_path, 'colour = "blue"\n'))])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "colour" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_fields_prints_the_catalog_as_json(runner: CliRunner) -> None:
    result = invoke(runner, "fields", "--from", "salesnexus", "--sandbox", "--json")
    assert result.exit_code == 0, result.output
    catalog: list[dict[str, Any]] = json.loads(result.stdout)
    store = SalesNexusStore(SandboxConfig(contacts=0, activities=0, sales=0))
    assert catalog == store.fields_json()
    names = {(f["table"], f["name"]) for f in catalog}
    assert {("contact", "Email"), ("contact", "Lead Source")} <= names


HELP = {
    (): ["run", "export", "fields", "demo", "sandbox"],
    ("run",): ["SPEC", "--sandbox", "--out", "--log-format", "--verbose"],
    ("export",): ["--from", "--tables", "--format", "--out", "--sandbox", "--rate"],
    ("fields",): ["--from", "--sandbox", "--json"],
    ("demo",): ["--out", "--contacts"],
    ("sandbox",): ["--json", "--contacts", "--seed", "--rate", "--fault-rate", "--host"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "crm-etl")
def test_help_mentions_the_main_options(runner: CliRunner, command: tuple[str, ...]) -> None:
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0
    for word in HELP[command]:
        assert word in result.stdout, word
