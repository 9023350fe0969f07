"""Client memory: peak RSS of an export and of an import at two sizes, to show it stays flat.

For each size N, a sandbox seeded with N contacts (activities and sales per contact as flags)
is exported to Parquet (all three tables), then an N-row CSV (:mod:`benchmarks.contacts_csv`,
the file ``import_throughput`` loads) is imported into SALESmanago. Each run is a fresh child
process whose ``ru_maxrss`` is its peak RSS; the "baseline" is the same process before the run
starts (the interpreter with pandas, pyarrow and aiohttp imported), so "growth" is what the run
itself held at its peak. Flat means the larger size's peak is within 10% of the smaller's; the
issue's ceiling is 300 MB.

    python -m benchmarks.memory [--sizes 80000,160000] [--activities-per-contact 1]
    python -m benchmarks.memory --sizes 1000000,2000000          # the issue's 1M vs 2M
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CRM_TITLES,
    CRMS,
    RESULTS_DIR,
    Crm,
    ExportSpec,
    SandboxProcess,
    SandboxSettings,
    SummaryRow,
    carry_over_runs,
    exit_on_failure,
    measure_export,
    note,
    print_table,
    write_results,
)
from benchmarks.contacts_csv import generate
from benchmarks.import_throughput import ImportSpec, measure_import

NAME = "memory"
DEFAULT_SIZES = (80_000, 160_000)
ALL_TABLES = ("contacts", "activities", "sales")
TARGET_MB = 300.0
FLAT_RATIO = 1.10

COLUMNS = (
    "case",
    "size",
    "rows",
    "duration s",
    "rows/s",
    "client peak RSS MB",
    "baseline MB",
    "growth MB",
    "sandbox RSS MB",
)
FLAT_COLUMNS = (
    "case",
    "sizes",
    "peak RSS MB",
    "larger/smaller",
    "growth MB",
    "growth larger/smaller",
    f"≤ {TARGET_MB:.0f} MB",
    f"flat (≤ {FLAT_RATIO:.2f}x)",
)


def _run_size(
    size: int,
    *,
    activities_per_contact: float,
    sales_per_contact: float,
    export_crms: Sequence[Crm],
    imports: bool,
    workdir: Path,
) -> list[dict[str, Any]]:
    seeded = size if export_crms else 0
    settings = SandboxSettings(
        contacts=seeded,
        activities=round(seeded * activities_per_contact),
        sales=round(seeded * sales_per_contact),
    )
    runs: list[dict[str, Any]] = []
    note(
        f"{NAME}: size {size:,}: seeding the sandbox"
        + (", writing the CSV meanwhile" if imports else "")
    )
    with ThreadPoolExecutor(1) as pool:
        csv_future = (
            pool.submit(generate, workdir / f"contacts-{size}.csv", size) if imports else None
        )
        with SandboxProcess(settings) as sandbox:
            csv = csv_future.result() if csv_future is not None else None  # before measuring
            for crm in export_crms:
                m = measure_export(sandbox, ExportSpec(crm=crm, tables=ALL_TABLES, rate=None))
                note(f"{NAME}: export {crm} {size:,}: {m.client_peak_rss_mb:.0f} MB peak")
                runs.append(
                    {
                        "case": f"export {CRM_TITLES[crm]} → Parquet, "
                        + ("all 3 tables" if settings.activities or settings.sales else "contacts"),
                        "kind": "export",
                        "crm": crm,
                        "size": size,
                        "rows": m.total_rows,
                        "rows_by_table": m.rows,
                        "duration_s": m.duration_s,
                        "client_peak_rss_mb": m.client_peak_rss_mb,
                        "client_baseline_rss_mb": m.client_baseline_rss_mb,
                        "client_cpu_s": m.client_cpu_s,
                        "sandbox_cpu_s": m.sandbox_cpu_s,
                        "sandbox_rss_mb": sandbox.rss_mb(),
                        "requests": m.sandbox_requests,
                    }
                )
            if csv is not None:
                spec = ImportSpec(csv=str(csv.path))
                i = measure_import(sandbox, f"memory {size}", spec, csv)
                note(f"{NAME}: import {size:,}: {i.client_peak_rss_mb:.0f} MB peak")
                runs.append(
                    {
                        "case": "import CSV → SALESmanago",
                        "kind": "import",
                        "crm": "salesmanago",
                        "size": size,
                        "rows": i.rows,
                        "loaded": i.accounting["loaded"],
                        "csv_bytes": csv.size_bytes,
                        "duration_s": i.duration_s,
                        "client_peak_rss_mb": i.client_peak_rss_mb,
                        "client_baseline_rss_mb": i.client_baseline_rss_mb,
                        "client_cpu_s": i.client_cpu_s,
                        "sandbox_cpu_s": i.sandbox_cpu_s,
                        "sandbox_rss_mb": sandbox.rss_mb(),
                        "requests": int(i.sandbox_stats.get("requests", 0)),
                    }
                )
                csv.path.unlink()
    return runs


def _growth(run_: dict[str, Any]) -> float:
    return float(run_["client_peak_rss_mb"] - run_["client_baseline_rss_mb"])


def flatness(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case, the smallest size against the largest."""
    cases: dict[str, list[dict[str, Any]]] = {}
    for run_ in runs:
        cases.setdefault(run_["case"], []).append(run_)
    out = []
    for case, group in cases.items():
        small = min(group, key=lambda r: r["size"])
        large = max(group, key=lambda r: r["size"])
        ratio = large["client_peak_rss_mb"] / small["client_peak_rss_mb"]
        growth_ratio = _growth(large) / _growth(small) if _growth(small) > 0 else None
        peak = max(r["client_peak_rss_mb"] for r in group)
        out.append(
            {
                "case": case,
                "sizes": [small["size"], large["size"]],
                "peak_rss_mb": [small["client_peak_rss_mb"], large["client_peak_rss_mb"]],
                "ratio": round(ratio, 3),
                "growth_mb": [round(_growth(small), 1), round(_growth(large), 1)],
                "growth_ratio": round(growth_ratio, 3) if growth_ratio is not None else None,
                "max_peak_rss_mb": peak,
                "within_target": peak <= TARGET_MB,
                "flat": ratio <= FLAT_RATIO,
            }
        )
    return out


def run(
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    activities_per_contact: float = 1.0,
    sales_per_contact: float = 0.25,
    export_crms: Sequence[Crm] = ("salesmanago",),
    imports: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; returns what ``results/memory.json`` holds."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crm-etl-bench-memory-") as tmp:
        for size in sorted(sizes):
            runs.extend(
                _run_size(
                    size,
                    activities_per_contact=activities_per_contact,
                    sales_per_contact=sales_per_contact,
                    export_crms=export_crms,
                    imports=imports,
                    workdir=Path(tmp),
                )
            )
    runs.sort(key=lambda r: (r["case"], r["size"]))
    return _payload(
        runs,
        {
            "sizes": sorted(sizes),
            "activities_per_contact": activities_per_contact,
            "sales_per_contact": sales_per_contact,
            "export_crms": list(export_crms),
            "imports": imports,
            "csv": "benchmarks.contacts_csv (default region DE, duplicates last)",
            "target_mb": TARGET_MB,
            "flat_ratio": FLAT_RATIO,
            "quota": None,
            "latency": 0.0,
        },
    )


def carry_over(result: dict[str, Any], previous: Path) -> dict[str, Any]:
    """The runs of the kinds this run skipped kept from the last results with the same sizes."""
    same = ("sizes", "activities_per_contact", "sales_per_contact")
    runs = carry_over_runs(result["runs"], result["settings"], previous, same)
    if len(runs) == len(result["runs"]):
        return result
    return _payload(sorted(runs, key=lambda r: (r["case"], r["size"])), result["settings"])


def _payload(runs: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    flat = flatness(runs)
    return {
        "settings": settings,
        "runs": runs,
        "flatness": flat,
        "table": {
            "columns": list(COLUMNS),
            "rows": [
                [
                    r["case"] + (" (earlier run)" if r.get("carried_over") else ""),
                    r["size"],
                    r["rows"],
                    r["duration_s"],
                    r["rows"] / r["duration_s"] if r["duration_s"] else 0.0,
                    r["client_peak_rss_mb"],
                    r["client_baseline_rss_mb"],
                    _growth(r),
                    r["sandbox_rss_mb"],
                ]
                for r in runs
            ],
        },
        "flat_table": {
            "columns": list(FLAT_COLUMNS),
            "rows": [
                [
                    f["case"],
                    " vs ".join(f"{s:,}" for s in f["sizes"]),
                    " → ".join(f"{v:.0f}" for v in f["peak_rss_mb"]),
                    f"{f['ratio']:.2f}x",
                    " → ".join(f"{v:.0f}" for v in f["growth_mb"]),
                    "" if f["growth_ratio"] is None else f"{f['growth_ratio']:.2f}x",
                    "met" if f["within_target"] else f"missed ({f['max_peak_rss_mb']:.0f} MB)",
                    "met" if f["flat"] else "missed",
                ]
                for f in flat
            ],
        },
    }


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    """Lines for the combined summary of ``python -m benchmarks``."""
    lines = []
    for f in result["flatness"]:
        small, large = f["sizes"]
        big = next(r for r in result["runs"] if r["case"] == f["case"] and r["size"] == large)
        lines.append(
            SummaryRow(
                case=f"memory: {f['case']}, {small:,} vs {large:,}",
                rows=big["rows"],
                duration_s=big["duration_s"],
                requests=big["requests"],
                figures=(
                    f"peak RSS {f['peak_rss_mb'][0]:.0f} → {f['peak_rss_mb'][1]:.0f} MB "
                    f"({f['ratio']:.2f}x), target ≤ {TARGET_MB:.0f} MB flat: "
                    + ("met" if f["within_target"] and f["flat"] else "missed")
                ),
            )
        )
    return lines


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    seeded = (
        f"; {s['activities_per_contact']:g} activities and {s['sales_per_contact']:g} sales per "
        "contact"
        if s["export_crms"]
        else ""
    )
    title = (
        f"Client memory (peak RSS of a fresh process per run): sizes "
        f"{', '.join(f'{n:,}' for n in s['sizes'])}{seeded}; no quota, no latency"
    )
    print_table(title, result["table"]["columns"], result["table"]["rows"])
    print_table(
        f"Flatness: smallest vs largest size (target ≤ {TARGET_MB:.0f} MB and flat)",
        result["flat_table"]["columns"],
        result["flat_table"]["rows"],
    )


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError("give at least two positive sizes, e.g. 100000,200000")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated contact / CSV row counts (default 80000,160000)",
    )
    parser.add_argument("--activities-per-contact", type=float, default=1.0)
    parser.add_argument("--sales-per-contact", type=float, default=0.25)
    parser.add_argument(
        "--export-crm",
        choices=[*CRMS, "both", "none"],
        default="salesmanago",
        help="which CRM's export to measure (none: imports only)",
    )
    parser.add_argument("--no-import", action="store_true", help="measure exports only")
    parser.add_argument(
        "--name", default=NAME, help=f"results/<name>.json (default {NAME}), e.g. memory_1m_2m"
    )
    args = parser.parse_args(argv)
    crms: tuple[Crm, ...] = {"both": CRMS, "none": ()}.get(args.export_crm, (args.export_crm,))
    if not crms and args.no_import:
        parser.error("nothing to measure: --export-crm none with --no-import")
    with exit_on_failure():
        result = run(
            sizes=args.sizes,
            activities_per_contact=args.activities_per_contact,
            sales_per_contact=args.sales_per_contact,
            export_crms=crms,
            imports=not args.no_import,
        )
    result = carry_over(result, RESULTS_DIR / f"{args.name}.json")
    path = write_results(args.name, result)
    report(result)
    note(f"results: {path}")


if __name__ == "__main__":
    main()
