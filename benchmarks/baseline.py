"""Baseline: a sequential client, as the vendors' own client libraries work, against ours.

The baseline (below, plain aiohttp, ~50 lines) sends one request at a time: no prefetch, no
packing, no concurrency. It does the same work on the wire:

* SALESmanago export: ``contact/paginatedContactList`` pages of 1000, one after the other;
* SalesNexus export: ``get-contacts`` pages of 1000, one call per HTTP request;
* SALESmanago import: the CSV read with ``csv.DictReader``, ``contact/batchupsert`` chunks of
  1000 sent one at a time.

It only decodes what it fetches (the exports write no file, the import validates nothing), so
it does strictly less work than our pipeline, which also transforms, validates and writes
Parquet or outcome files: the speed-up is a lower bound. Both run against the same sandbox
(its own process) at 30 ms latency and no quota; each import gets a fresh, empty account.

    python -m benchmarks.baseline [--contacts 50000] [--rows 50000] [--latency 0.03] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import re
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from benchmarks.common import (
    CRM_TITLES,
    ExportSpec,
    SandboxProcess,
    SandboxSettings,
    SummaryRow,
    check_loopback,
    exit_on_failure,
    measure_median,
    note,
    print_table,
    write_results,
)
from benchmarks.contacts_csv import generate
from benchmarks.import_throughput import ImportSpec, measure_import

T = TypeVar("T")

NAME = "baseline"
DEFAULT_CONTACTS = 50_000
DEFAULT_ROWS = 50_000
LATENCY = 0.03
PAGE = 1000


# -- the sequential client -----------------------------------------------------------------------
class SequentialClient:
    """One aiohttp session, one request at a time (what a vendor SDK call loop does)."""

    def __init__(self, info: dict[str, str]) -> None:
        self.info = info
        self.requests = 0
        self._session = aiohttp.ClientSession(trust_env=False)

    async def post(self, url: str, body: Any) -> Any:
        self.requests += 1
        async with self._session.post(check_loopback(url), json=body) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def sm(self, method: str, **body: Any) -> dict[str, Any]:
        i = self.info
        sha = hashlib.sha1((i["api_key"] + i["client_id"] + i["api_secret"]).encode()).hexdigest()
        auth = {"clientId": i["client_id"], "apiKey": i["api_key"], "sha": sha}
        auth["requestTime"] = int(time.time() * 1000)
        return await self.post(f"{i['base_url']}/{method}", {**auth, "owner": i["owner"], **body})

    async def sm_export(self) -> int:
        rows, page = 0, 0
        while True:
            answer = await self.sm("contact/paginatedContactList", page=page, size=PAGE)
            rows, page = rows + len(answer["contacts"]), page + 1
            if not answer.get("hasMore") or not answer["contacts"]:
                return rows

    async def sn(self, function: str, parameters: dict[str, str]) -> Any:
        call = {"function": function, "parameters": parameters, "request-id": "1"}
        (element,) = await self.post(self.info["base_url"], [call])
        return element["result"]

    async def sn_export(self) -> int:
        login = {"email-address": self.info["email"], "password": self.info["password"]}
        token, rows = (await self.sn("get-login-token", login))["login-token"], 0
        while True:
            page = await self.sn(
                "get-contacts",
                {"login-token": token, "filter-value": "", "start-after": str(rows)}
                | {"page-size": str(PAGE)},
            )
            rows += len(page["contact-ids"])
            if len(page["contact-ids"]) < PAGE:
                return rows

    async def sm_import(self, path: Path) -> int:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            entries = [sm_entry(row) for row in csv.DictReader(handle)]
        loaded = 0
        for start in range(0, len(entries), PAGE):
            chunk = entries[start : start + PAGE]
            answer = await self.sm("contact/batchupsert", upsertDetails=chunk)
            loaded += len(answer.get("contactIds") or {})
        return loaded

    async def close(self) -> None:
        await self._session.close()


def sm_entry(row: dict[str, str]) -> dict[str, Any]:
    """A ``batchupsert`` entry from a CSV row, values as they stand (no validation)."""
    contact = {"email": row["E-mail"].strip(), "name": f"{row['First Name']} {row['Last Name']}"}
    contact |= {k: row[c] for k, c in (("phone", "Phone"), ("company", "Company")) if row[c]}
    address = {"streetAddress": row["Street"], "zipCode": row["Zip Code"], "city": row["City"]}
    address["country"] = row["Country"]
    entry: dict[str, Any] = {"contact": {**contact, "address": address}}
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["Birthday"]):
        entry["birthday"] = row["Birthday"].replace("-", "")
    if row["Tags"]:
        entry["tags"] = [t.strip() for t in re.split("[;,]", row["Tags"]) if t.strip()]
    if row["Customer Tier"]:
        entry["properties"] = {"Customer Tier": row["Customer Tier"]}
    return entry


# -- measuring -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """The same work done by the baseline and by our pipeline."""

    case: str
    rows: int
    baseline_rows: int
    baseline_s: float
    baseline_requests: int
    baseline_cpu_s: float
    baseline_sandbox_cpu_s: float
    ours_s: float
    ours_requests: int
    ours_cpu_s: float
    ours_sandbox_cpu_s: float

    @property
    def speed_up(self) -> float:
        return self.baseline_s / self.ours_s if self.ours_s > 0 else 0.0


def _wall(result: tuple[int, float, int, float, float]) -> float:
    return result[1]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_baseline(
    sandbox: SandboxProcess, crm: str, work: str, path: Path | None = None
) -> tuple[int, float, int, float, float]:
    """Run one baseline job in this process: (rows, seconds, requests, CPU s, sandbox CPU s)."""
    sandbox.reset(crm)  # type: ignore[arg-type]

    async def job() -> tuple[int, int]:
        client = SequentialClient(sandbox.info[crm])
        try:
            if work == "import":
                assert path is not None
                rows = await client.sm_import(path)
            else:
                rows = await (client.sm_export() if crm == "salesmanago" else client.sn_export())
            return rows, client.requests
        finally:
            await client.close()

    cpu, sandbox_cpu, started = _cpu(), sandbox.cpu_seconds(), time.monotonic()
    rows, requests = asyncio.run(job())
    wall = time.monotonic() - started
    return rows, wall, requests, _cpu() - cpu, sandbox.cpu_seconds() - sandbox_cpu


def _median(runs: list[T], key: Callable[[T], float]) -> T:
    return sorted(runs, key=key)[(len(runs) - 1) // 2]


def run(
    *,
    contacts: int = DEFAULT_CONTACTS,
    rows: int = DEFAULT_ROWS,
    latency: float = LATENCY,
    repeat: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns what ``results/baseline.json`` holds (medians of ``repeat``
    runs per side)."""
    repeat = max(1, repeat)
    pairs: list[Pair] = []
    settings = SandboxSettings(contacts=contacts, activities=0, sales=0, latency=latency)
    note(f"{NAME}: seeding the sandbox ({contacts:,} contacts, {latency * 1000:.0f} ms latency)")
    with SandboxProcess(settings) as sandbox:
        for crm in ("salesmanago", "salesnexus"):
            b_rows, b_s, b_req, b_cpu, b_sandbox = _median(
                [run_baseline(sandbox, crm, "export") for _ in range(repeat)], key=_wall
            )
            spec = ExportSpec(crm=crm, tables=("contacts",), rate=None)
            m = measure_median(sandbox, spec, repeat)
            note(f"{NAME}: {crm} export: baseline {b_s:.1f} s, ours {m.duration_s:.1f} s")
            pairs.append(
                Pair(
                    case=f"export {CRM_TITLES[crm]} contacts"
                    + (" (1 call/request)" if crm == "salesnexus" else ""),
                    rows=m.total_rows,
                    baseline_rows=b_rows,
                    baseline_s=b_s,
                    baseline_requests=b_req,
                    baseline_cpu_s=b_cpu,
                    baseline_sandbox_cpu_s=b_sandbox,
                    ours_s=m.duration_s,
                    ours_requests=m.sandbox_requests,
                    ours_cpu_s=m.client_cpu_s,
                    ours_sandbox_cpu_s=m.sandbox_cpu_s,
                )
            )
    empty = SandboxSettings(contacts=0, activities=0, sales=0, latency=latency)
    with tempfile.TemporaryDirectory(prefix="crm-etl-bench-baseline-") as tmp:
        note(f"{NAME}: generating a CSV of {rows:,} rows")
        generated = generate(Path(tmp) / "contacts.csv", rows)
        baselines, ours = [], []
        for _ in range(repeat):  # each import into a fresh, empty account
            with SandboxProcess(empty) as sandbox:
                baselines.append(run_baseline(sandbox, "salesmanago", "import", generated.path))
            with SandboxProcess(empty) as sandbox:
                spec = ImportSpec(csv=str(generated.path))
                ours.append(measure_import(sandbox, "baseline comparison", spec, generated))
        b_rows, b_s, b_req, b_cpu, b_sandbox = _median(baselines, key=_wall)
        i = _median(ours, key=lambda m: m.duration_s)
        note(f"{NAME}: import: baseline {b_s:.1f} s, ours {i.duration_s:.1f} s")
        pairs.append(
            Pair(
                case="import CSV → SALESmanago",
                rows=i.rows,
                baseline_rows=b_rows,
                baseline_s=b_s,
                baseline_requests=b_req,
                baseline_cpu_s=b_cpu,
                baseline_sandbox_cpu_s=b_sandbox,
                ours_s=i.duration_s,
                ours_requests=int(i.sandbox_stats.get("requests", 0)),
                ours_cpu_s=i.client_cpu_s,
                ours_sandbox_cpu_s=i.sandbox_cpu_s,
            )
        )
    return {
        "settings": {
            "contacts": contacts,
            "rows": rows,
            "latency": latency,
            "quota": None,
            "repeat": repeat,
        },
        "pairs": [{**asdict(p), "speed_up": round(p.speed_up, 2)} for p in pairs],
        "table": {
            "columns": [
                "case",
                "rows",
                "baseline s",
                "baseline req",
                "baseline CPU s",
                "sandbox CPU s (baseline)",
                "ours s",
                "ours req",
                "ours CPU s",
                "sandbox CPU s (ours)",
                "speed-up",
            ],
            "rows": [
                [
                    p.case,
                    p.rows,
                    p.baseline_s,
                    p.baseline_requests,
                    p.baseline_cpu_s,
                    p.baseline_sandbox_cpu_s,
                    p.ours_s,
                    p.ours_requests,
                    p.ours_cpu_s,
                    p.ours_sandbox_cpu_s,
                    f"{p.speed_up:.2f}x",
                ]
                for p in pairs
            ],
        },
    }


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    """Lines for the combined summary of ``python -m benchmarks``."""
    latency = result["settings"]["latency"] * 1000
    return [
        SummaryRow(
            case=f"vs sequential client: {p['case']}, {latency:.0f} ms latency",
            rows=p["rows"],
            duration_s=p["ours_s"],
            requests=p["ours_requests"],
            figures=f"speed-up {p['speed_up']:.2f}x over one request at a time "
            f"({p['baseline_s']:.1f} s, {p['baseline_requests']} req)",
        )
        for p in result["pairs"]
    ]


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    title = (
        f"Speed-up over a sequential client (one request at a time): {s['contacts']:,} contacts, "
        f"{s['rows']:,}-row CSV, {s['latency'] * 1000:.0f} ms sandbox latency, no quota, "
        f"median of {s['repeat']} run(s) per side"
    )
    print_table(title, result["table"]["columns"], result["table"]["rows"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline")
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="CSV rows to import")
    parser.add_argument("--latency", type=float, default=LATENCY, help="seconds per answer")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per side and case; medians are shown"
    )
    args = parser.parse_args(argv)
    with exit_on_failure():
        result = run(
            contacts=args.contacts, rows=args.rows, latency=args.latency, repeat=args.repeat
        )
    path = write_results(NAME, result)
    report(result)
    note(f"results: {path}")


if __name__ == "__main__":
    main()
