"""Soak: a bounded long run under every kind of fault at once, on loopback only.

The sandbox runs in its own process with 5% 5xx answers, 1% dropped connections, 1% truncated
JSON, 1% per-row failures, SalesNexus login tokens that live a few seconds, and a quota a little
below the client's pace (so 429s come and the adaptive pacer has to find the real quota). Then,
through the CLI in subprocesses exactly as a user runs it (``-v --log-format json``):

1. export every SALESmanago contact (20k by default), with activities and sales, to Parquet;
2. import N CSV rows (20k by default) into SalesNexus;
3. migrate SalesNexus (its seeded records plus the imported contacts) into SALESmanago.

The retry budget is kept tiny (2 attempts), so runs do stop half way; every run that exits 75
(resumable) is resumed with ``--resume`` until it completes, within an overall time cap.

Losses are computed from the final state, never from the runs' own accounts: the export's
Parquet rows against the seeded store (rebuilt here from the same seed); every imported row
against ``success.csv``/``rejects.csv`` and the SalesNexus contacts read back; every migrated
source record against the crosswalk/rejects and the SALESmanago contacts, tasks and events read
back. A loss is a record that is in neither the target nor a rejects file, or that a run reported
as written and the target lacks. Rows the sandbox failed on purpose (per-row failures) are
*rejected*, with the CRM's message, not lost. Duplicates in the target are counted apart: a
non-idempotent write (a PURCHASE event) whose answer was lost (a connection dropped after the
request was processed, a truncated body) is retried by the client and so written twice.

    python -m benchmarks.soak [--rows 20000] [--contacts 20000] [--time-cap 1200]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import SecretStr

from benchmarks.common import (
    REPO_ROOT,
    BenchmarkError,
    SandboxProcess,
    SandboxSettings,
    SummaryRow,
    exit_on_failure,
    note,
    print_table,
    write_results,
)
from etl.cli.sandbox_cmd import sandbox_environment
from etl.clients import (
    Pacing,
    RetryPolicy,
    SalesManagoClient,
    SalesManagoConfig,
    SalesNexusClient,
    SalesNexusConfig,
)
from etl.sandbox import SandboxConfig
from etl.sandbox.salesmanago_store import SalesManagoStore
from etl.transform import FieldCatalog

NAME = "soak"
CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]
RESUMABLE = 75
FINISHED = (0, 5)  # 5: finished, some rows rejected (reported, with reasons)
RESUME_ARG = re.compile(r"--resume (\S+)")
# Reading the final state back: patient, paced under the quota, faults and all.
PATIENT = RetryPolicy(max_attempts=30, base_delay=0.05, max_delay=2.0, max_retry_after=10.0)


@dataclass(frozen=True)
class SoakSettings:
    rows: int = 20_000  # CSV rows imported
    contacts: int = 20_000  # seeded per CRM (the export reads SALESmanago's)
    activities: int = 4_000
    sales: int = 1_000
    quota: float = 100.0  # the sandbox's requests/s per account
    pace: float = 115.0  # the client's configured pace: a little above the quota
    server_error: float = 0.05
    drop: float = 0.01
    truncate: float = 0.01
    row_failure: float = 0.01
    token_ttl: float = 3.0
    max_attempts: int = 2  # the runs' retry budget: tiny, so runs stop and get resumed
    time_cap_s: float = 1200.0
    seed: int = 42


@dataclass(frozen=True)
class FaultySandbox(SandboxSettings):
    """:class:`SandboxSettings` plus the fault and token flags of ``crm-etl sandbox``."""

    server_error: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    row_failure: float = 0.0
    token_ttl: float = 3600.0

    def flags(self) -> list[str]:
        return [
            *super().flags(),
            f"--server-error={self.server_error}",
            f"--drop={self.drop}",
            f"--truncate={self.truncate}",
            f"--row-failure={self.row_failure}",
            "--slow=0",
            "--call-error=0",
            f"--token-ttl={self.token_ttl}",
        ]


@dataclass
class Attempt:
    exit_code: int
    duration_s: float
    retries: int
    rate_limited: int
    summary: dict[str, Any] | None


@dataclass
class Stage:
    name: str
    attempts: list[Attempt] = field(default_factory=list)
    capped: bool = False

    @property
    def resumes(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.attempts[-1].summary if self.attempts else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resumes": self.resumes,
            "capped": self.capped,
            "retries": sum(a.retries for a in self.attempts),
            "rate_limited": sum(a.rate_limited for a in self.attempts),
            "duration_s": round(sum(a.duration_s for a in self.attempts), 1),
            "exit_codes": [a.exit_code for a in self.attempts],
            "summary": self.summary,
        }


# -- inputs -----------------------------------------------------------------------------------
def write_csv(path: Path, rows: int) -> None:
    """``rows`` distinct, valid contacts (deterministic)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Last Name", "Company", "City"])
        for i in range(rows):
            writer.writerow(
                [f"soak{i:06d}@soak.example", f"Soak{i}", "Tester", f"Soak Co {i % 97}", "Kraków"]
            )


def connection_toml(section: str, crm: str, settings: SoakSettings) -> str:
    if crm == "salesmanago":
        keys = (
            'crm = "salesmanago"\n'
            'base_url = "${SALESMANAGO_BASE_URL}"\n'
            'client_id = "${SALESMANAGO_CLIENT_ID}"\n'
            'api_key = "${SALESMANAGO_API_KEY}"\n'
            'api_secret = "${SALESMANAGO_API_SECRET}"\n'
            'owner = "${SALESMANAGO_OWNER}"\n'
        )
    else:
        keys = (
            'crm = "salesnexus"\n'
            'base_url = "${SALESNEXUS_BASE_URL}"\n'
            'email = "${SALESNEXUS_EMAIL}"\n'
            'password = "${SALESNEXUS_PASSWORD}"\n'
        )
    return (
        f"[{section}]\n{keys}\n"
        f"[{section}.pacing]\nrate = {settings.pace}\nburst = 1\nmax_in_flight = 8\n\n"
        f"[{section}.retry]\nmax_attempts = {settings.max_attempts}\nbase_delay = 0.05\n"
        "max_delay = 1.0\nmax_retry_after = 10.0\n\n"
    )


def write_specs(work: Path, settings: SoakSettings, csv_path: Path) -> dict[str, Path]:
    specs = {
        "export": (
            '[pipeline]\nname = "soak_export"\nkind = "export"\n\n'
            + connection_toml("source", "salesmanago", settings)
            + '[export]\ntables = ["contacts", "activities", "sales"]\n\n'
            + '[destination]\nformat = "parquet"\npath = "export"\n'
        ),
        "import": (
            '[pipeline]\nname = "soak_import"\nkind = "import"\n\n'
            + f'[import]\ninput = "{csv_path}"\n\n'
            + connection_toml("target", "salesnexus", settings)
            + '[destination]\npath = "import"\n'
        ),
        "migrate": (
            '[pipeline]\nname = "soak_migrate"\nkind = "migrate"\n\n'
            + connection_toml("source", "salesnexus", settings)
            + connection_toml("target", "salesmanago", settings)
            + '[destination]\npath = "migrate"\n'
        ),
    }
    paths = {}
    for name, text in specs.items():
        paths[name] = work / f"{name}.toml"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def sandbox_env(info: dict[str, dict[str, str]]) -> dict[str, str]:
    sm, sn = info["salesmanago"], info["salesnexus"]
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SALESMANAGO_", "SALESN"))}
    return {
        **keep,
        **sandbox_environment({"salesmanago": sm, "salesnexus": _without_token(sn)}),
        "NO_PROXY": "127.0.0.1,localhost",
    }


def _without_token(sn: dict[str, str]) -> dict[str, str]:
    """The soak logs in with email and password, so token expiry is exercised."""
    return {k: v for k, v in sn.items() if k != "token"}


# -- running, resuming --------------------------------------------------------------------------
def run_stage(name: str, spec: Path, work: Path, env: dict[str, str], deadline: float) -> Stage:
    """Run ``crm-etl run SPEC`` until it finishes, resuming every resumable exit."""
    stage = Stage(name)
    resume: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stage.capped = True
            return stage
        command = [*CLI, "run", str(spec), *resume, "-v", "--log-format", "json"]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                command, env=env, cwd=work, capture_output=True, text=True, timeout=remaining
            )
        except subprocess.TimeoutExpired:
            stage.capped = True
            return stage
        stage.attempts.append(_attempt(proc, time.monotonic() - started))
        if proc.returncode in FINISHED:
            note(f"{NAME}: {name} finished after {stage.resumes} resume(s)")
            return stage
        if proc.returncode != RESUMABLE:
            tail = proc.stderr[-3000:]
            raise BenchmarkError(f"{name} failed with exit {proc.returncode}:\n{tail}")
        found = RESUME_ARG.search(proc.stderr)
        if found is None:
            raise BenchmarkError(
                f"{name} exited 75 without a way to resume:\n{proc.stderr[-2000:]}"
            )
        resume = ["--resume", found.group(1)]
        note(f"{NAME}: {name} stopped (resumable); resuming from {found.group(1)}")


def _attempt(proc: subprocess.CompletedProcess[str], duration: float) -> Attempt:
    retries = rate_limited = 0
    for line in proc.stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = str(record.get("message", ""))
        if "retrying in" in message:
            retries += 1
            rate_limited += "429" in message
    summary = None
    for line in proc.stdout.splitlines():
        if line.startswith('{"summary"'):
            summary = json.loads(line)["summary"]
    return Attempt(proc.returncode, duration, retries, rate_limited, summary)


# -- the final state ----------------------------------------------------------------------------
def sm_config(info: dict[str, str], rate: float) -> SalesManagoConfig:
    return SalesManagoConfig(
        client_id=info["client_id"],
        api_key=SecretStr(info["api_key"]),
        api_secret=SecretStr(info["api_secret"]),
        owner=info["owner"],
        base_url=info["base_url"],
        pacing=Pacing(rate=rate, burst=1, max_in_flight=8),
        retry=PATIENT,
    )


def sn_config(info: dict[str, str], rate: float) -> SalesNexusConfig:
    return SalesNexusConfig(
        email=info["email"],
        password=SecretStr(info["password"]),
        base_url=info["base_url"],
        pacing=Pacing(rate=rate, burst=1, max_in_flight=8),
        retry=PATIENT,
    )


async def read_salesmanago(config: SalesManagoConfig) -> list[dict[str, Any]]:
    contacts: list[dict[str, Any]] = []
    async with SalesManagoClient(config) as client:
        page = 0
        while True:
            answer = await client.paginated_contacts(page, 1000)
            contacts.extend(answer.contacts)
            if not answer.has_more:
                return contacts
            page += 1


async def read_salesnexus(config: SalesNexusConfig) -> dict[str, Any]:
    """Every contact's email and every activity and sale id."""
    async with SalesNexusClient(config) as client:
        catalog = FieldCatalog.from_api(await client.get_all_fields())
        email_field = str(catalog.id_for("contact", "Email"))
        found: dict[str, Any] = {"contacts": {}, "activities": [], "sales": []}
        for table, listing in (
            ("contacts", client.get_contacts),
            ("activities", client.get_activities),
            ("sales", client.get_sales),
        ):
            start = 0
            while True:
                page = await listing(start, 1000)
                if not page.ids:
                    break
                if table == "contacts":
                    for contact_id, record in zip(page.ids, page.records, strict=True):
                        found["contacts"][contact_id] = str(record.get(email_field, "")).lower()
                else:
                    found[table].extend(page.ids)
                start += len(page.ids)
    return found


def seeded_salesmanago(settings: SoakSettings) -> dict[str, set[str]]:
    """The ids the export must deliver, from the same seeding the sandbox did."""
    store = SalesManagoStore(
        SandboxConfig(
            seed=settings.seed,
            contacts=settings.contacts,
            activities=settings.activities,
            sales=settings.sales,
        )
    )
    ids: dict[str, set[str]] = {"contacts": set(), "activities": set(), "sales": set()}
    for contact in store.contacts.values():
        cid = contact["id"]
        ids["contacts"].add(cid)
        ids["activities"].update(task["id"] for task in contact["contactTasks"])
        for kind, key in (("note", "contactNotes"), ("visit", "contactVisits")):
            ids["activities"].update(f"{cid}:{kind}:{i}" for i in range(len(contact[key])))
        ids["sales"].update(
            e["eventId"]
            for e in contact["contactExtEvents"]
            if e["contactExtEventType"] == "PURCHASE"
        )
    return ids


def check_export(out: Path, expected: dict[str, set[str]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for table, ids in expected.items():
        exported = ds.dataset(out / table, partitioning="hive").to_table(columns=["source_id"])
        got = Counter(exported.column("source_id").to_pylist())
        result[table] = {
            "expected": len(ids),
            "exported": sum(got.values()),
            "lost": len(ids - got.keys()),
            "duplicates": sum(n - 1 for n in got.values() if n > 1),
            "unexpected": len(got.keys() - ids),
        }
    result["losses"] = sum(t["lost"] for t in result.values())
    result["duplicates"] = sum(t["duplicates"] for t in result.values() if isinstance(t, dict))
    return result


def read_outcomes(path: Path, key: str) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if row.get(key) is not None]


def check_import(out: Path, rows: int, salesnexus: dict[str, Any]) -> dict[str, Any]:
    success = read_outcomes(out / "success.csv", "line")
    rejects = read_outcomes(out / "rejects.csv", "line")
    lines = set(range(2, rows + 2))  # the header is line 1; one record per line
    accounted = {int(r["line"]) for r in success} | {int(r["line"]) for r in rejects}
    in_target = set(salesnexus["contacts"].values())
    missing = [r["email"] for r in success if r["email"].lower() not in in_target]
    stages = Counter(r["stage"] for r in rejects)
    return {
        "input": rows,
        "loaded": len(success),
        "rejected": len(rejects),
        "rejected_by_stage": dict(stages),
        "unaccounted": len(lines - accounted),
        "loaded_but_missing_in_target": len(missing),
        "losses": len(lines - accounted) + len(missing),
    }


def check_migration(
    out: Path, salesnexus: dict[str, Any], salesmanago: list[dict[str, Any]]
) -> dict[str, Any]:
    moved = pq.read_table(out / "crosswalk.parquet").to_pylist()
    refused = read_outcomes(out / "rejects.csv", "table")
    sources = {("contacts", cid) for cid in salesnexus["contacts"]}
    sources |= {("activities", a) for a in salesnexus["activities"]}
    sources |= {("sales", s) for s in salesnexus["sales"]}
    accounted = {(r["table"], r["source_id"]) for r in moved}
    accounted |= {(r["table"], r["source_id"]) for r in refused}
    contacts = {c["id"]: c for c in salesmanago}
    tasks = {t["id"] for c in salesmanago for t in c["contactTasks"]}
    events = {e["eventId"]: (c["id"], e) for c in salesmanago for e in c["contactExtEvents"]}
    known = {"contact": contacts.keys(), "task": tasks, "purchase": events.keys()}
    missing = [r for r in moved if r["target_id"] not in known[r["target_kind"]]]
    # A PURCHASE event sent twice (an answer lost, the request retried) is a duplicate.
    migrated_sales = {r["source_id"]: r["target_id"] for r in moved if r["table"] == "sales"}
    per_sale = Counter(
        (owner, event.get("externalId"))
        for owner, event in events.values()
        if event.get("contactExtEventType") == "PURCHASE"
        and event.get("externalId") in migrated_sales
    )
    owners = {sid: events[tid][0] for sid, tid in migrated_sales.items() if tid in events}
    duplicates = sum(max(0, per_sale[(owner, sid)] - 1) for sid, owner in owners.items())
    statuses = Counter(r["status"] for r in refused)
    return {
        "source_records": len(sources),
        "migrated": Counter(r["table"] for r in moved),
        "rejected": dict(statuses),
        "unaccounted": len(sources - accounted),
        "written_but_missing_in_target": len(missing),
        "duplicate_purchase_events": duplicates,
        "duplicates": duplicates,
        "losses": len(sources - accounted) + len(missing),
    }


# -- the benchmark ------------------------------------------------------------------------------
def run(settings: SoakSettings | None = None, *, keep: Path | None = None) -> dict[str, Any]:
    """Run the soak; returns what ``results/soak.json`` holds."""
    settings = settings or SoakSettings()
    sandbox_settings = FaultySandbox(
        contacts=settings.contacts,
        activities=settings.activities,
        sales=settings.sales,
        rate=settings.quota,
        burst=max(1, int(settings.quota // 10)),
        seed=settings.seed,
        server_error=settings.server_error,
        drop=settings.drop,
        truncate=settings.truncate,
        row_failure=settings.row_failure,
        token_ttl=settings.token_ttl,
    )
    started = time.monotonic()
    deadline = started + settings.time_cap_s
    with tempfile.TemporaryDirectory(prefix="crm-etl-soak-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        csv_path = work / "contacts.csv"
        write_csv(csv_path, settings.rows)
        specs = write_specs(work, settings, csv_path)
        note(f"{NAME}: seeding the sandbox ({settings.contacts:,} contacts per CRM)")
        with SandboxProcess(sandbox_settings) as sandbox:
            env = sandbox_env(sandbox.info)
            stages = []
            for name in ("export", "import", "migrate"):
                note(f"{NAME}: {name}")
                stage = run_stage(name, specs[name], work, env, deadline)
                stages.append(stage)
                if stage.capped:
                    break
            sandbox_stats = {crm: sandbox.stats(crm) for crm in ("salesmanago", "salesnexus")}
            checks: dict[str, Any] = {}
            if not stages[-1].capped or len(stages) > 1:
                note(f"{NAME}: reading the final state back")
                checks = asyncio.run(_checks(settings, sandbox.info, work, stages))
    stage_dicts = [s.as_dict() for s in stages]
    rows = _stage_rows(stages)
    return {
        "settings": asdict(settings),
        "capped": any(s.capped for s in stages),
        "duration_s": round(time.monotonic() - started, 1),
        "rows": rows,
        "retries": sum(s["retries"] for s in stage_dicts),
        "rate_limited": sum(s["rate_limited"] for s in stage_dicts),
        "resumes": sum(s.resumes for s in stages),
        "losses": sum(int(c.get("losses", 0)) for c in checks.values()),
        "duplicates": sum(int(c.get("duplicates", 0)) for c in checks.values()),
        "stages": stage_dicts,
        "checks": checks,
        "sandbox": {
            crm: {
                "requests": stats["requests"],
                "rate_limited": stats["rate_limited"],
                "faults": stats["faults"],
                "logins": stats["logins"],
                "writes": stats["writes"],
            }
            for crm, stats in sandbox_stats.items()
        },
    }


async def _checks(
    settings: SoakSettings, info: dict[str, dict[str, str]], work: Path, stages: list[Stage]
) -> dict[str, Any]:
    done = {s.name for s in stages if not s.capped}
    rate = settings.quota * 0.9
    checks: dict[str, Any] = {}
    if "export" in done:
        checks["export"] = check_export(work / "export", seeded_salesmanago(settings))
    salesnexus = await read_salesnexus(sn_config(info["salesnexus"], rate))
    if "import" in done:
        checks["import"] = check_import(work / "import", settings.rows, salesnexus)
    if "migrate" in done:
        salesmanago = await read_salesmanago(sm_config(info["salesmanago"], rate))
        checks["migrate"] = check_migration(work / "migrate", salesnexus, salesmanago)
    return checks


def _stage_rows(stages: list[Stage]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for stage in stages:
        summary = stage.summary or {}
        if stage.name == "import":
            rows["import"] = int(summary.get("details", {}).get("loaded", 0))
        else:
            rows[stage.name] = sum(int(v) for v in summary.get("rows", {}).values())
    return rows


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    figures = (
        f"retries {result['retries']:,}, 429s {result['rate_limited']:,}, "
        f"resumes {result['resumes']}, losses {result['losses']}, "
        f"duplicates {result['duplicates']}" + (", CAPPED" if result["capped"] else "")
    )
    requests = sum(int(s["requests"]) for s in result["sandbox"].values())
    return [
        SummaryRow(
            case=f"{result['settings']['rows']:,} rows, faults + quota",
            rows=sum(result["rows"].values()),
            duration_s=result["duration_s"],
            requests=requests,
            figures=figures,
        )
    ]


def print_result(result: dict[str, Any]) -> None:
    rows = []
    for stage in result["stages"]:
        name = stage["name"]
        check = result["checks"].get(name, {})
        rows.append(
            (
                name,
                result["rows"].get(name, 0),
                stage["duration_s"],
                stage["retries"],
                stage["rate_limited"],
                stage["resumes"],
                check.get("losses", "-"),
                check.get("duplicates", "-"),
                "capped" if stage["capped"] else "ok",
            )
        )
    rows.append(
        (
            "total",
            sum(result["rows"].values()),
            result["duration_s"],
            result["retries"],
            result["rate_limited"],
            result["resumes"],
            result["losses"],
            result["duplicates"],
            "capped" if result["capped"] else "ok",
        )
    )
    print_table(
        "Soak: every fault at once, resumed until done (details: results/soak.json)",
        (
            "stage",
            "rows",
            "duration s",
            "retries",
            "429s",
            "resumes",
            "losses",
            "duplicates",
            "end",
        ),
        rows,
    )


def main(argv: Sequence[str] | None = None) -> None:
    defaults = SoakSettings()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--rows", type=int, default=defaults.rows, help="CSV rows to import")
    parser.add_argument("--contacts", type=int, default=defaults.contacts)
    parser.add_argument("--activities", type=int, default=defaults.activities)
    parser.add_argument("--sales", type=int, default=defaults.sales)
    parser.add_argument("--quota", type=float, default=defaults.quota)
    parser.add_argument("--pace", type=float, default=defaults.pace)
    parser.add_argument("--token-ttl", type=float, default=defaults.token_ttl)
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts)
    parser.add_argument("--time-cap", type=float, default=defaults.time_cap_s)
    parser.add_argument("--keep", type=Path, help="keep the runs' outputs in this directory")
    args = parser.parse_args(argv)
    settings = SoakSettings(
        rows=args.rows,
        contacts=args.contacts,
        activities=args.activities,
        sales=args.sales,
        quota=args.quota,
        pace=args.pace,
        token_ttl=args.token_ttl,
        max_attempts=args.max_attempts,
        time_cap_s=args.time_cap,
    )
    with exit_on_failure():
        result = run(settings, keep=args.keep)
    path = write_results(NAME, result)
    print_result(result)
    note(f"{NAME}: results in {path.relative_to(REPO_ROOT)}")


# ``python -m benchmarks`` runs the soak small (results/soak_quick.json), so the whole suite stays
# a few minutes; ``python -m benchmarks.soak`` runs it at full size (results/soak.json).
QUICK_NAME = "soak_quick"
QUICK = SoakSettings(rows=2_000, contacts=2_000, activities=400, sales=100, time_cap_s=300.0)


def run_quick() -> dict[str, Any]:
    return run(QUICK)


if __name__ == "__main__":
    main()
