"""The writing commands end to end: ``crm-etl import``, ``migrate`` and ``run`` of write specs.

Every command runs against the emulators it starts itself (``--sandbox``, real loopback HTTP);
expectations come from the sample files' documented rejects and from the seeded stores.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from etl.cli.connections import DEMO_SANDBOX
from etl.cli.main import cli
from etl.pipeline.spec import load_spec
from etl.sandbox.salesmanago_store import SalesManagoStore
from etl.sandbox.salesnexus_store import SalesNexusStore
from tests.support import invoke
from tests.test_cli import crm_etl, sandbox_secrets
from tests.test_import import CLEAN, MESSY, MESSY_DROPPED_LAST, MESSY_REJECTED_LINES, messy_rows
from tests.test_migrate import sm_sources, valid_email

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
MESSY_MAPPING_FILE = REPO / "sample_data" / "mappings" / "messy.toml"
SUCCESS_HEADER = ["line", "email", "id", "status"]
# The mapping `crm-etl import` logs for the messy file with mappings/messy.toml.
MESSY_MAPPING_LINES = [
    '"Full Name" -> name',
    '"E-mail" -> email',
    '"Phone 1" -> phone',
    '"Street" -> street',
    '"Zip/Postal Code" -> zip_code',
    '"City" -> city',
    '"Country" -> country',
    '"Organisation" -> company',
    '"DOB" -> birthday',
    '"Labels" -> tags',
    '"Customer Tier" -> properties["Customer Tier"]',
    '"Notes" -> (ignored)',
]
MESSY_ACCOUNTING = "input 120 = loaded 103 + rejected 14 + duplicates 3"
LOYALTY_TIER_MISSING = (
    "Error: SalesNexus has no contact field named 'Loyalty Tier': create it in SalesNexus, "
    "map the column to a field that exists, or ignore unmapped columns"
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def header_of(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def summary_file(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def assert_clean_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "internal error" not in stderr


def assert_no_outputs(out: Path) -> None:
    """Nothing written (an import that stops early may leave its empty directory behind)."""
    assert not out.exists() or list(out.iterdir()) == []


def messy_record_lines() -> set[int]:
    """The line every data record of the messy file starts on (the two short/long rows too)."""
    lines = set(messy_rows()) | {27, 32}  # rows with the wrong field count are not in messy_rows
    assert len(lines) == 120
    return lines


# --- import ---------------------------------------------------------------------------------------


def test_import_of_the_messy_file_is_partial_and_accounts_for_every_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = crm_etl(
        "import",
        str(MESSY),
        "--to",
        "salesmanago",
        "--mapping",
        str(MESSY_MAPPING_FILE),
        "--sandbox",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 5, done.stderr
    assert_clean_stderr(done.stderr)
    logged = stripped_lines(done.stderr)
    for line in MESSY_MAPPING_LINES:
        assert line in logged, line
    assert MESSY_ACCOUNTING in stripped_lines(done.stdout)
    for secret in sandbox_secrets():
        assert secret not in done.stdout and secret not in done.stderr

    outputs = {p.name for p in out.iterdir()}
    assert {"rejects.csv", "success.csv", "summary.json"} <= outputs  # (beside any run state)
    success = read_csv(out / "success.csv")
    rejects = read_csv(out / "rejects.csv")
    summary = summary_file(out)
    details = summary["details"]
    assert summary["status"] == "partial"
    assert summary["rows"] == {"contacts": 103}
    assert (details["input"], details["loaded"], details["rejected"], details["duplicates"]) == (
        120,
        103,
        14,
        3,
    )
    assert details["input"] == details["loaded"] + details["rejected"] + details["duplicates"]
    assert len(success) == details["loaded"]
    assert Counter(r["stage"] for r in rejects) == {"input": 2, "validation": 12, "duplicate": 3}
    assert len(rejects) == details["rejected"] + details["duplicates"]

    rejected = [int(r["line"]) for r in rejects if r["stage"] != "duplicate"]
    dropped = [int(r["line"]) for r in rejects if r["stage"] == "duplicate"]
    loaded = [int(r["line"]) for r in success]
    assert rejected == MESSY_REJECTED_LINES
    assert sorted(dropped) == sorted(MESSY_DROPPED_LAST)
    assert len(set(loaded)) == len(loaded) == 103
    assert set(loaded) == messy_record_lines() - set(rejected) - set(dropped)
    assert len({r["email"] for r in success}) == 103
    assert all(r["id"] and r["status"] == "upserted" for r in success)


def test_import_dry_run_counts_requests_and_loads_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = invoke(
        runner,
        "import",
        str(MESSY),
        "--to",
        "salesmanago",
        "--mapping",
        str(MESSY_MAPPING_FILE),
        "--sandbox",
        "--out",
        str(out),
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    assert_clean_stderr(result.stderr)
    printed = stripped_lines(result.stdout)
    assert "input 120 = would load 103 + rejected 14 + duplicates 3" in printed
    # 103 rows fit one batchupsert; at the sandbox's 150 req/s that rounds to no estimate.
    assert "would send 1 write requests" in printed
    assert header_of(out / "success.csv") == SUCCESS_HEADER
    assert read_csv(out / "success.csv") == []
    assert len(read_csv(out / "rejects.csv")) == 17
    summary = summary_file(out)
    assert summary["status"] == "dry-run"
    assert summary["rows"] == {"contacts": 0}
    assert summary["requests"] == 0
    details = summary["details"]
    assert (details["loaded"], details["would_load"], details["write_requests"]) == (0, 103, 1)


def test_import_into_salesnexus_refuses_a_column_it_has_no_field_for(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["import", str(CLEAN), "--to", "salesnexus", "--sandbox", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert LOYALTY_TIER_MISSING in result.stderr.splitlines()
    assert_clean_stderr(result.stderr)
    assert_no_outputs(out)


def test_import_into_salesnexus_with_unmapped_columns_ignored_loads_every_row(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = invoke(
        runner,
        "import",
        str(CLEAN),
        "--to",
        "salesnexus",
        "--unmapped",
        "ignore",
        "--sandbox",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert_clean_stderr(result.stderr)
    assert '"Loyalty Tier" -> (ignored)' in stripped_lines(result.stderr)
    printed = stripped_lines(result.stdout)
    assert "input 200 = loaded 200 + rejected 0 + duplicates 0  (created 200, updated 0)" in printed
    success = read_csv(out / "success.csv")
    with CLEAN.open(newline="", encoding="utf-8") as fh:
        emails = [row["Email"].lower() for row in csv.DictReader(fh)]
    assert [r["email"] for r in success] == emails
    assert [int(r["line"]) for r in success] == list(range(2, 202))
    assert {r["status"] for r in success} == {"created"}
    assert read_csv(out / "rejects.csv") == []
    assert summary_file(out)["details"]["loaded"] == 200


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


UNUSABLE_FILES = {
    "empty": (b"", "the file is empty (0 bytes)"),
    "header only": (
        b"First Name,Last Name,Email\r\n",
        "the file has a header but no data rows",
    ),
    "binary": (
        b"\x00\x01\x02\x03" * 512,
        "not a CSV text file (binary content: 25% NUL bytes and 100% control bytes in the "
        "first 64 KiB)",
    ),
    "png": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
        "not a CSV text file, it looks like a PNG image; export the sheet as CSV",
    ),
    "xlsx": (
        _xlsx(),
        "not a CSV text file, it looks like a Excel workbook (.xlsx); export the sheet as CSV",
    ),
}


@pytest.mark.parametrize("case", list(UNUSABLE_FILES))
def test_import_of_an_unusable_file_is_a_usage_error(
    runner: CliRunner, tmp_path: Path, case: str
) -> None:
    content, message = UNUSABLE_FILES[case]
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)
    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["import", str(path), "--to", "salesmanago", "--sandbox", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert f"Error: {path}: {message}" in result.stderr.splitlines()
    assert_clean_stderr(result.stderr)
    assert not out.exists()


def test_import_with_an_unknown_phone_region_is_a_usage_error(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["import", str(CLEAN), "--to", "salesmanago", "--region", "XX", "--out", str(out)]
    result = runner.invoke(cli, [*args, "--sandbox"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "Error: command line: [import] default_region: unknown region 'XX' (expected a "
        "two-letter country code such as DE, PL or US)"
    ]
    assert not out.exists()


# --- run of write specs ---------------------------------------------------------------------------


def test_run_csv_to_salesmanago_spec_is_partial(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the spec's input path is relative to the checkout
    out = tmp_path / "out"
    result = invoke(
        runner, "run", str(PIPELINES / "csv_to_salesmanago.toml"), "--sandbox", "--out", str(out)
    )
    assert result.exit_code == 5, result.output
    assert_clean_stderr(result.stderr)
    assert '"Customer Tier" -> properties["customer_tier"]' in stripped_lines(result.stderr)
    assert MESSY_ACCOUNTING in stripped_lines(result.stdout)
    summary = summary_file(out)
    assert (summary["pipeline"], summary["status"]) == ("csv_to_salesmanago", "partial")
    assert len(read_csv(out / "success.csv")) == 103
    assert len(read_csv(out / "rejects.csv")) == 17


def test_run_migrate_salesmanago_to_salesnexus_spec_moves_everything_it_can(
    runner: CliRunner, tmp_path: Path
) -> None:
    sources = sm_sources(SalesManagoStore(DEMO_SANDBOX))
    contacts = len(SalesManagoStore(DEMO_SANDBOX).contacts)
    activities = len(sources["task"]) + len(sources["note"])
    sales, visits = len(sources["sale"]), len(sources["visit"])
    out = tmp_path / "out"
    spec = PIPELINES / "migrate_salesmanago_to_salesnexus.toml"
    result = invoke(runner, "run", str(spec), "--sandbox", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert_clean_stderr(result.stderr)
    assert f"skipped: activities {visits:,}" in stripped_lines(result.stdout)
    summary = summary_file(out)
    assert summary["status"] == "ok"
    assert summary["rows"] == {"contacts": contacts, "activities": activities, "sales": sales}
    assert summary["details"]["skipped"] == {"contacts": 0, "activities": visits, "sales": 0}
    assert summary["details"]["rejected"] == {"contacts": 0, "activities": 0, "sales": 0}
    crosswalk = pq.read_table(out / "crosswalk.parquet").to_pylist()
    assert Counter(r["table"] for r in crosswalk) == summary["rows"]
    rejects = read_csv(out / "rejects.csv")
    assert [(r["table"], r["status"]) for r in rejects] == [("activities", "skipped")] * visits


# --- migrate --------------------------------------------------------------------------------------


def test_migrate_dry_run_prints_the_write_requests_and_writes_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    store = SalesNexusStore(DEMO_SANDBOX)
    email, contact_id = store.field_id("contact", "Email"), store.field_id("sales", "Contact ID")
    moving = {cid for cid, rec in store.contacts.items() if valid_email(rec[str(email)])}
    activities = sum(1 for a in store.activities.values() if a["schedule-with"] in moving)
    sales = sum(1 for s in store.sales.values() if s[str(contact_id)] in moving)
    # One batchupsert per 1000 contacts, then one request per task and per PURCHASE event.
    requests = math.ceil(len(moving) / 1000) + activities + sales
    assert DEMO_SANDBOX.quota.rate is not None
    seconds = round(requests / DEMO_SANDBOX.quota.rate, 1)
    out = tmp_path / "out"
    result = invoke(
        runner,
        "migrate",
        "--from",
        "salesnexus",
        "--to",
        "salesmanago",
        "--sandbox",
        "--dry-run",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert_clean_stderr(result.stderr)
    printed = stripped_lines(result.stdout)
    assert (
        f"would send {requests:,} write requests, about {seconds:,.0f}s at the configured rate"
        in (printed)
    )
    refused = (
        f"rejected: contacts {len(store.contacts) - len(moving):,}, "
        f"activities {len(store.activities) - activities:,}, sales {len(store.sales) - sales:,}"
    )
    assert refused in printed
    assert not out.exists()


@pytest.mark.parametrize("crm", ["salesmanago", "salesnexus"])
def test_migrate_into_the_same_crm_is_a_usage_error(
    runner: CliRunner, tmp_path: Path, crm: str
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["migrate", "--from", crm, "--to", crm, "--sandbox", "--dry-run", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "Error: Invalid value for --to: --from and --to must be different CRMs" in (
        result.stderr.splitlines()
    )
    assert_clean_stderr(result.stderr)
    assert not out.exists()


# --- shipped specs --------------------------------------------------------------------------------

KINDS = {"nightly_export": "export", "csv_to": "import", "migrate": "migrate"}


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.origin == str(path)
    kind = next(kind for prefix, kind in KINDS.items() if path.stem.startswith(prefix))
    assert spec.kind == kind


def test_the_shipped_specs_cover_every_kind() -> None:
    kinds = Counter(load_spec(path).kind for path in PIPELINES.glob("*.toml"))
    assert kinds == {"export": 2, "import": 2, "migrate": 2}
