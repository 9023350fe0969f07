"""Export throughput: N contacts (2N activities, N/2 sales) from each CRM sandbox to Parquet.

No quota, no latency, no client pacing: the figures show what the client (and the emulator
serving it) can do flat out. Each CRM is exported twice, all three tables and contacts alone.
The sandbox's CPU seconds during each export sit beside the client's, so a server-bound result
shows as a sandbox busy near 100% (the emulator is one single-threaded process).

    python -m benchmarks.export_throughput [--contacts 100000] [--repeat 3] [--profile DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CRM_TITLES,
    CRMS,
    Crm,
    ExportMeasurement,
    ExportSpec,
    SandboxProcess,
    SandboxSettings,
    SummaryRow,
    exit_on_failure,
    measure_median,
    note,
    print_table,
    write_results,
)
from benchmarks.profiling import print_profile

NAME = "export_throughput"
DEFAULT_CONTACTS = 100_000
ALL_TABLES = ("contacts", "activities", "sales")

COLUMNS = (
    "CRM",
    "tables",
    "rows",
    "duration s",
    "range s",
    "rows/s",
    "contacts/s",
    "HTTP req",
    "client CPU s",
    "CPU s/100k rows",
    "client peak RSS MB",
    "sandbox CPU s",
    "sandbox busy %",
)


def duration_range(m: ExportMeasurement) -> str:
    """Fastest to slowest of the repeats ("" for a single run)."""
    if len(m.durations_s) < 2:
        return ""
    return f"{min(m.durations_s):.2f}–{max(m.durations_s):.2f}"


def table_row(m: ExportMeasurement) -> list[Any]:
    tables = "all 3" if set(m.spec.tables) == set(ALL_TABLES) else "+".join(m.spec.tables)
    return [
        CRM_TITLES[m.spec.crm],
        tables,
        m.total_rows,
        m.duration_s,
        duration_range(m),
        m.rows_per_s,
        m.rows.get("contacts", 0) / m.duration_s if m.duration_s else 0.0,
        m.sandbox_requests,
        m.client_cpu_s,
        m.client_cpu_per_100k_rows,
        m.client_peak_rss_mb,
        m.sandbox_cpu_s,
        100 * m.sandbox_cpu_s / m.duration_s if m.duration_s else 0.0,
    ]


def run(
    *,
    contacts: int = DEFAULT_CONTACTS,
    activities: int | None = None,
    sales: int | None = None,
    crms: Sequence[Crm] = CRMS,
    page_size: int = 1000,
    max_in_flight: int = 8,
    profile_dir: Path | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns what ``results/export_throughput.json`` holds."""
    settings = SandboxSettings(
        contacts=contacts,
        activities=2 * contacts if activities is None else activities,
        sales=contacts // 2 if sales is None else sales,
    )
    measurements: list[ExportMeasurement] = []
    note(f"{NAME}: seeding the sandbox ({settings.contacts:,} contacts per CRM)")
    with SandboxProcess(settings) as sandbox:
        note(f"{NAME}: sandbox up in {sandbox.startup_seconds:.1f} s")
        for crm in crms:
            for tables in (ALL_TABLES, ("contacts",)):
                profile = None
                if profile_dir is not None:
                    profile_dir.mkdir(parents=True, exist_ok=True)
                    profile = str(profile_dir / f"{NAME}-{crm}-{'+'.join(tables)}.prof")
                spec = ExportSpec(
                    crm=crm,
                    tables=tables,
                    page_size=page_size,
                    rate=None,
                    max_in_flight=max_in_flight,
                    profile=profile,
                )
                m = measure_median(sandbox, spec, repeat)
                label = "+".join(tables)
                note(f"{NAME}: {crm} {label}: {m.total_rows:,} rows in {m.duration_s:.1f} s")
                measurements.append(m)
        startup, sandbox_rss = sandbox.startup_seconds, sandbox.rss_mb()
    return {
        "settings": {
            "contacts": settings.contacts,
            "activities": settings.activities,
            "sales": settings.sales,
            "page_size": page_size,
            "client_max_in_flight": max_in_flight,
            "repeat": repeat,
            "quota": None,
            "latency": 0.0,
            "sandbox_startup_s": round(startup, 2),
            "sandbox_rss_mb": round(sandbox_rss, 1),
        },
        "runs": [m.as_dict() for m in measurements],
        "table": {"columns": list(COLUMNS), "rows": [table_row(m) for m in measurements]},
    }


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    """Lines for the combined summary of ``python -m benchmarks``."""
    lines = []
    for run_ in result["runs"]:
        tables = "all 3 tables" if len(run_["spec"]["tables"]) == 3 else "contacts alone"
        busy = 100 * run_["sandbox_cpu_s"] / run_["duration_s"]
        figures = (
            f"client CPU {run_['client_cpu_per_100k_rows']:.2f} s/100k rows, "
            f"peak RSS {run_['client_peak_rss_mb']:.0f} MB, sandbox busy {busy:.0f}%"
        )
        lines.append(
            SummaryRow(
                case=f"{CRM_TITLES[run_['spec']['crm']]}, {tables}, unpaced",
                rows=run_["total_rows"],
                duration_s=run_["duration_s"],
                requests=run_["sandbox_stats"]["requests"],
                figures=figures,
            )
        )
    return lines


def report(result: dict[str, Any], profile_dir: Path | None = None) -> None:
    settings = result["settings"]
    title = (
        f"Export throughput to Parquet: {settings['contacts']:,} contacts, "
        f"{settings['activities']:,} activities, {settings['sales']:,} sales per CRM; "
        f"no quota, no latency, page size {settings['page_size']}"
    )
    print_table(title, result["table"]["columns"], result["table"]["rows"])
    if profile_dir is not None:
        for run_ in result["runs"]:
            if run_["spec"]["profile"]:
                print_profile(Path(run_["spec"]["profile"]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export_throughput")
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--activities", type=int, default=None, help="default: 2 x contacts")
    parser.add_argument("--sales", type=int, default=None, help="default: contacts / 2")
    parser.add_argument("--crm", choices=CRMS, action="append", help="default: both")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per case; the median duration is shown"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="DIR", help="cProfile each export into DIR"
    )
    args = parser.parse_args(argv)
    with exit_on_failure():
        result = run(
            contacts=args.contacts,
            activities=args.activities,
            sales=args.sales,
            crms=tuple(args.crm or CRMS),
            page_size=args.page_size,
            max_in_flight=args.max_in_flight,
            profile_dir=args.profile,
            repeat=args.repeat,
        )
    path = write_results(NAME, result)
    report(result, args.profile)
    note(f"results: {path}")


if __name__ == "__main__":
    main()
