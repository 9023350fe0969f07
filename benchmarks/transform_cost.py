"""Transform cost: reading and normalising a messy CSV with our code vs a plain Arrow read.

A messy spreadsheet (:mod:`benchmarks.messy_csv`, default 200k rows) is read and normalised
the way the import's first pass does it (``sniff``, ``read_header``, ``build_mapping``, then
``read_chunks`` and ``normalize_chunk`` chunk by chunk, default region DE), and read plainly
with ``pyarrow.csv.read_csv`` (same delimiter, quoted newlines allowed, ragged rows skipped).
The ratio ours ÷ pyarrow is the price of validation and normalisation; the issue's target is
≤ 3x. No network: this is the client's CPU alone.

Our time is split into reading (time inside ``read_chunks``) and normalising (inside
``normalize_chunk``); phone normalisation is the difference between a pass with
``default_region`` and one without (everything else equal). A cProfile pass then names the
functions the time goes to. Every pass runs in a fresh process, so no cache carries over.

    python -m benchmarks.transform_cost [--rows 200000] [--repeat 3]
    python -m benchmarks.transform_cost --rows 1000000
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    BenchmarkError,
    SummaryRow,
    exit_on_failure,
    note,
    print_table,
    write_results,
)
from benchmarks.messy_csv import MESSY_MAPPING, MESSY_REGION, write_messy_csv
from benchmarks.profiling import top_costs

NAME = "transform_cost"
DEFAULT_ROWS = 200_000
TARGET_RATIO = 3.0
PASS_TIMEOUT = 1800.0

# Functions of ours whose cumulative time the profile breakdown shows, in pipeline order.
BREAKDOWN = (
    ("etl/extract/csv_input.py", "read_chunks", "reading: read_chunks (all of it)"),
    ("etl/extract/csv_input.py", "_pieces", "  blocks (parsed in the read-ahead thread)"),
    ("etl/extract/csv_input.py", "_take", "  cutting blocks into chunks"),
    ("etl/transform/contact_input.py", "normalize_chunk", "normalising: normalize_chunk (all)"),
    ("etl/transform/contact_input.py", "_as_table", "  cells to one-chunk Arrow strings"),
    ("etl/transform/contact_rules.py", "phones", "  phones (phones)"),
    ("etl/transform/phones.py", "to_e164", "    to_e164 (vectorised)"),
    ("etl/transform/phones.py", "e164", "      phonenumbers, for values off the fast path"),
    ("etl/transform/contact_rules.py", "parse_birthdays", "  birthdays (parse_birthdays)"),
    ("etl/transform/contact_rules.py", "_fixed_width_dates", "    fixed-width shapes, numpy"),
    ("etl/transform/contact_rules.py", "_date_parts", "    the rest, by regex"),
    ("etl/transform/contact_rules.py", "names", "  names (names)"),
    ("etl/transform/contact_rules.py", "normalize_email", "  emails (normalize_email)"),
    ("etl/transform/contact_rules.py", "split_tags", "  tags (split_tags)"),
    ("etl/transform/contact_rules.py", "clean", "  trimming (clean, all columns)"),
    ("etl/transform/contact_input.py", "too_long", "  length checks (too_long)"),
    ("etl/transform/contact_rules.py", "property_map", "  properties map (property_map)"),
    ("etl/transform/contact_input.py", "_rejects", "  reject rows (_rejects)"),
    ("etl/transform/contact_input.py", "_json_rows", "    original values as JSON"),
)


# -- the passes, each run in a fresh process ----------------------------------------------------
def _pass_pyarrow(path: Path, use_threads: bool) -> dict[str, Any]:
    import pyarrow.csv as pacsv

    started, cpu = time.perf_counter(), time.process_time()
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=use_threads),
        parse_options=pacsv.ParseOptions(
            delimiter=";", newlines_in_values=True, invalid_row_handler=lambda row: "skip"
        ),
    )
    return {
        "total_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "rows": table.num_rows,
    }


def _pass_ours(path: Path, region: str | None, profile: Path | None) -> dict[str, Any]:
    from etl.extract.csv_input import read_chunks, read_header, sniff
    from etl.transform.contact_input import NormalizeOptions, build_mapping, normalize_chunk

    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:
        profiler.enable()
    started, cpu = time.perf_counter(), time.process_time()
    dialect = sniff(path)
    mapping = build_mapping(read_header(path, dialect), MESSY_MAPPING)
    options = NormalizeOptions(default_region=region)
    planning = time.perf_counter() - started
    reading = normalising = reading_cpu = normalising_cpu = 0.0
    rows = contacts = rejects = 0
    chunks = read_chunks(path, dialect)
    while True:
        mark, mark_cpu = time.perf_counter(), time.process_time()
        chunk = next(chunks, None)
        reading += time.perf_counter() - mark
        reading_cpu += time.process_time() - mark_cpu
        if chunk is None:
            break
        mark, mark_cpu = time.perf_counter(), time.process_time()
        normalized = normalize_chunk(chunk.table, chunk.lines, mapping, options)
        normalising += time.perf_counter() - mark
        normalising_cpu += time.process_time() - mark_cpu
        rows += len(chunk.lines) + len(chunk.rejects)
        contacts += len(normalized.contacts)
        rejects += len(chunk.rejects) + len(normalized.rejects)
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    return {
        "total_s": total,
        "cpu_s": total_cpu,
        "planning_s": planning,
        "reading_s": reading,
        "reading_cpu_s": reading_cpu,
        "normalising_s": normalising,
        "normalising_cpu_s": normalising_cpu,
        "rows": rows,
        "contacts": contacts,
        "rejects": rejects,
    }


def _worker(argv: Sequence[str]) -> None:
    kind, path = argv[0], Path(argv[1])
    if kind in ("pyarrow", "pyarrow-1-thread"):
        result = _pass_pyarrow(path, use_threads=kind == "pyarrow")
    elif kind == "ours":
        result = _pass_ours(path, MESSY_REGION, None)
    elif kind == "ours-no-phones":
        result = _pass_ours(path, None, None)
    elif kind == "ours-profiled":
        result = _pass_ours(path, MESSY_REGION, Path(argv[2]))
    else:
        raise SystemExit(f"unknown pass {kind!r}")
    print(json.dumps(result))


def run_pass(kind: str, path: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.transform_cost", "--worker", kind, str(path), *extra],
        capture_output=True,
        cwd=REPO_ROOT,
        timeout=PASS_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-3000:]
        raise BenchmarkError(f"the {kind} pass failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def run_median(kind: str, path: Path, repeat: int) -> dict[str, Any]:
    runs = sorted((run_pass(kind, path) for _ in range(max(1, repeat))), key=lambda r: r["total_s"])
    chosen = runs[(len(runs) - 1) // 2]
    return {**chosen, "totals_s": [round(r["total_s"], 3) for r in runs]}


# -- the profile ---------------------------------------------------------------------------------
def breakdown(path: Path) -> list[dict[str, Any]]:
    """Cumulative seconds of the functions in :data:`BREAKDOWN` (0 where absent)."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    out = []
    for where, function, label in BREAKDOWN:
        cumulative = sum(
            entry[3]
            for (filename, _, name), entry in stats.items()
            if name == function and filename.endswith(where)
        )
        out.append({"step": label, "function": f"{where}:{function}", "cumulative_s": cumulative})
    return out


# -- the benchmark -------------------------------------------------------------------------------
def run(
    *, rows: int = DEFAULT_ROWS, repeat: int = 1, profile: bool = True, seed: int = 7
) -> dict[str, Any]:
    """Run the benchmark; returns what ``results/transform_cost.json`` holds."""
    with tempfile.TemporaryDirectory(prefix="crm-etl-bench-transform-") as tmp:
        note(f"{NAME}: writing a messy CSV of {rows:,} rows")
        csv = write_messy_csv(Path(tmp) / "messy.csv", rows, seed=seed)
        passes: dict[str, dict[str, Any]] = {}
        for kind in ("pyarrow", "pyarrow-1-thread", "ours", "ours-no-phones"):
            passes[kind] = run_median(kind, csv.path, repeat)
            note(f"{NAME}: {kind}: {passes[kind]['total_s']:.2f} s")
        profiled: dict[str, Any] | None = None
        if profile:
            prof_path = Path(tmp) / "ours.prof"
            result = run_pass("ours-profiled", csv.path, str(prof_path))
            note(f"{NAME}: profiled pass: {result['total_s']:.2f} s")
            profiled = {
                "total_s": result["total_s"],
                "breakdown": breakdown(prof_path),
                "top_costs": [
                    {"function": f, "calls": c, "own_s": round(o, 3), "cumulative_s": round(u, 3)}
                    for f, c, o, u in top_costs(prof_path, 15)
                ],
            }
    ours, plain = passes["ours"], passes["pyarrow"]
    no_phones = passes["ours-no-phones"]
    phones = max(0.0, ours["normalising_s"] - no_phones["normalising_s"])
    phones_cpu = max(0.0, ours["normalising_cpu_s"] - no_phones["normalising_cpu_s"])
    ratio = ours["total_s"] / plain["total_s"]
    labels = {
        "pyarrow": "pyarrow.csv.read_csv (threads on)",
        "pyarrow-1-thread": "pyarrow.csv.read_csv (1 thread)",
        "ours": "ours: sniff + read_chunks + normalize_chunk",
        "ours-no-phones": "ours without default_region (no phone step)",
    }
    timing_rows = [
        [
            label,
            passes[kind]["total_s"],
            passes[kind]["total_s"] / plain["total_s"],
            passes[kind]["cpu_s"],
            passes[kind]["cpu_s"] / plain["cpu_s"],
            passes[kind]["rows"],
            passes[kind]["rows"] / passes[kind]["total_s"],
        ]
        for kind, label in labels.items()
    ]
    total, total_cpu = ours["total_s"], ours["cpu_s"]
    steps = [
        ("sniff + header + mapping", ours["planning_s"], None),
        ("reading (inside read_chunks)", ours["reading_s"], ours["reading_cpu_s"]),
        ("normalising (inside normalize_chunk)", ours["normalising_s"], ours["normalising_cpu_s"]),
        ("  of which phones (with − without region)", phones, phones_cpu),
        (
            "  the rest of normalising",
            ours["normalising_s"] - phones,
            ours["normalising_cpu_s"] - phones_cpu,
        ),
    ]
    split_rows = [
        [label, wall, wall / total, cpu, None if cpu is None else cpu / total_cpu]
        for label, wall, cpu in steps
    ]
    return {
        "settings": {
            "rows": rows,
            "seed": seed,
            "repeat": repeat,
            "file_bytes": csv.size_bytes,
            "delimiter": csv.delimiter,
            "encoding": csv.encoding,
            "mapping": MESSY_MAPPING,
            "default_region": MESSY_REGION,
            "target_ratio": TARGET_RATIO,
        },
        "passes": passes,
        "ratio": round(ratio, 2),
        "within_target": ratio <= TARGET_RATIO,
        "ours_rows_per_s": round(ours["rows"] / ours["total_s"], 1),
        "cpu_ratio": round(ours["cpu_s"] / plain["cpu_s"], 2),
        "phones_s": round(phones, 3),
        "phones_cpu_s": round(phones_cpu, 3),
        "profile": profiled,
        "tables": {
            "timing": {
                "columns": [
                    "pass",
                    "wall s",
                    "wall ÷ pyarrow",
                    "CPU s",
                    "CPU ÷ pyarrow",
                    "rows",
                    "rows/s",
                ],
                "rows": timing_rows,
            },
            "split": {
                "columns": ["our step", "wall s", "wall share", "CPU s", "CPU share"],
                "rows": split_rows,
            },
        },
    }


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    """Lines for the combined summary of ``python -m benchmarks``."""
    ours = result["passes"]["ours"]
    verdict = "met" if result["within_target"] else "missed"
    return [
        SummaryRow(
            case="messy CSV: read + normalise vs pyarrow.csv.read_csv",
            rows=ours["rows"],
            duration_s=ours["total_s"],
            requests=None,
            figures=(
                f"{result['ratio']:.1f}x pyarrow (target ≤ {TARGET_RATIO:g}x: {verdict}); "
                f"phones {result['phones_s']:.1f} s of {ours['total_s']:.1f} s"
            ),
        )
    ]


def _pct(rows: list[list[Any]]) -> list[list[Any]]:
    """Shares (the 3rd and 5th cells) as percentages."""
    return [
        [
            label,
            wall,
            f"{100 * share:.0f}%",
            cpu,
            "" if cpu_share is None else f"{100 * cpu_share:.0f}%",
        ]
        for label, wall, share, cpu, cpu_share in rows
    ]


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    title = (
        f"Transform cost: messy CSV of {s['rows']:,} rows ({s['file_bytes'] / 1e6:.1f} MB, "
        f"'{s['delimiter']}'-separated, quoted line breaks, ragged rows), default region "
        f"{s['default_region']}; ours ÷ pyarrow {result['ratio']:.1f}x wall, "
        f"{result['cpu_ratio']:.1f}x CPU (target ≤ {s['target_ratio']:g}x: "
        f"{'met' if result['within_target'] else 'missed'})"
    )
    timing = result["tables"]["timing"]
    print_table(title, timing["columns"], timing["rows"])
    split = result["tables"]["split"]
    print_table("Where our time goes (unprofiled)", split["columns"], _pct(split["rows"]))
    profile = result["profile"]
    if profile:
        total = profile["total_s"]
        print_table(
            f"cProfile of our pass (profiled total {total:.1f} s; cumulative per function)",
            ("step", "cumulative s", "share"),
            [
                (b["step"], b["cumulative_s"], f"{100 * b['cumulative_s'] / total:.0f}%")
                for b in profile["breakdown"]
            ],
        )
        print_table(
            "Top 15 own-time costs of our pass",
            ("function", "calls", "own s", "cumulative s"),
            [
                (c["function"], c["calls"], c["own_s"], c["cumulative_s"])
                for c in profile["top_costs"]
            ],
        )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        _worker(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transform_cost")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="e.g. 1000000")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per timed pass; the median is shown"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with exit_on_failure():
        result = run(
            rows=args.rows, repeat=args.repeat, profile=not args.no_profile, seed=args.seed
        )
    path = write_results(NAME, result)
    report(result)
    note(f"results: {path}")


if __name__ == "__main__":
    main()
