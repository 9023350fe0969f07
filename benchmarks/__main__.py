"""``python -m benchmarks``: every benchmark at its default size, then one summary table.

Each benchmark also writes its full figures to ``benchmarks/results/<name>.json``; run one alone
(``python -m benchmarks.export_throughput --help``) for its detailed table and options.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import (
    baseline,
    export_throughput,
    import_throughput,
    memory,
    quota_utilisation,
    soak,
    throughput_1m,
    transform_cost,
)
from benchmarks.common import SummaryRow, exit_on_failure, note, print_table, write_results

Benchmark = tuple[str, Callable[[], dict[str, Any]], Callable[[dict[str, Any]], list[SummaryRow]]]

BENCHMARKS: list[Benchmark] = [
    (export_throughput.NAME, export_throughput.run, export_throughput.summary_rows),
    (quota_utilisation.NAME, quota_utilisation.run, quota_utilisation.summary_rows),
    (import_throughput.NAME, import_throughput.run, import_throughput.summary_rows),
    (memory.NAME, memory.run, memory.summary_rows),
    (throughput_1m.NAME, throughput_1m.run, throughput_1m.summary_rows),
    (transform_cost.NAME, transform_cost.run, transform_cost.summary_rows),
    (baseline.NAME, baseline.run, baseline.summary_rows),
    (soak.QUICK_NAME, soak.run_quick, soak.summary_rows),  # python -m benchmarks.soak: 20k
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run every benchmark at its default size."
    )
    parser.add_argument(
        "--only", choices=[name for name, _, _ in BENCHMARKS], action="append", default=None
    )
    args = parser.parse_args(argv)
    rows: list[tuple[Any, ...]] = []
    for name, run, summarise in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        with exit_on_failure():
            result = run()
        path = write_results(name, result)
        note(f"{name}: {time.monotonic() - started:.1f} s, results in {path}")
        rows.extend(
            (name, r.case, r.rows, r.duration_s, r.rows_per_s, r.requests, r.figures)
            for r in summarise(result)
        )
    print_table(
        "Benchmark summary (details: benchmarks/results/<benchmark>.json)",
        ("benchmark", "case", "rows", "duration s", "rows/s", "HTTP req", "figures"),
        rows,
    )


if __name__ == "__main__":
    main()
