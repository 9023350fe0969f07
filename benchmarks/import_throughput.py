"""CSV import throughput: a generated spreadsheet of N contacts into the SALESmanago sandbox.

The file (:mod:`benchmarks.contacts_csv`) is deterministic and realistic: unique emails, names
with non-ASCII letters, German national and international phones (read with default region DE),
birthdays in three formats, tags, a custom column, and a small share of invalid rows and duplicate
emails, so the row accounting the import must report is known in advance.

Two cases, each against a SALESmanago sandbox in its own process (``crm-etl sandbox``), each
import in a fresh child process (:mod:`benchmarks._worker`):

* **unpaced**: no quota, no latency, no client pacing. Rows/s end to end (both passes: validate
  and spill, then upsert), the wall split between pass 1 and pass 2 (the import's own figures),
  client CPU seconds per 100k rows, client peak RSS, the sandbox's CPU (all of it spent in pass
  2, so its busy share there says whether the sandbox is the limit), ``batchupsert`` calls and
  the row accounting.
* **quota**: the sandbox at ``--rate 10 --burst 10 --latency 0.03``, the client paced at 10
  req/s. Achieved requests/s ÷ quota (the sandbox's own figure, first request to last), 429s, and
  whether the upserts took the fewest possible calls, ``ceil(loaded rows / 1000)``.

    python -m benchmarks.import_throughput [--rows 100000] [--quota-rows N] [--profile DIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    SandboxProcess,
    SandboxSettings,
    SummaryRow,
    exit_on_failure,
    note,
    print_table,
    run_worker,
    write_results,
)
from benchmarks.contacts_csv import GeneratedCsv, generate
from benchmarks.profiling import print_profile, top_costs

NAME = "import_throughput"
DEFAULT_ROWS = 100_000
QUOTA_RATE = 10.0
QUOTA_BURST = 10
QUOTA_LATENCY = 0.03
UPSERT_ROWS = 1000  # rows per batchupsert call, the contract's limit
BATCHUPSERT = "contact/batchupsert"
EMPTY_ACCOUNT = SandboxSettings(contacts=0, activities=0, sales=0)


@dataclass(frozen=True)
class ImportSpec:
    """One import as the worker runs it; ``rate=None`` switches client pacing off."""

    csv: str
    crm: str = "salesmanago"
    default_region: str = "DE"
    duplicates: str = "last"
    rate: float | None = None
    burst: int = 1
    max_in_flight: int = 8
    calls_per_request: int = 25
    profile: str | None = None


@dataclass(frozen=True)
class ImportMeasurement:
    """What one import cost, from the client's side and from the sandbox's."""

    case: str
    spec: ImportSpec
    generated: GeneratedCsv
    accounting: dict[str, int]
    duration_s: float
    client_requests: int
    client_rate_limited: int
    client_retries: int
    client_cpu_s: float
    client_peak_rss_mb: float
    client_baseline_rss_mb: float
    sandbox_cpu_s: float
    sandbox_stats: dict[str, Any] = field(repr=False)
    pass1_s: float = 0.0
    pass2_s: float = 0.0

    @property
    def rows(self) -> int:
        return self.accounting["input"]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def client_cpu_per_100k_rows(self) -> float:
        return self.client_cpu_s * 100_000 / self.rows if self.rows else 0.0

    @property
    def sandbox_busy(self) -> float:
        return self.sandbox_cpu_s / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def sandbox_busy_in_pass2(self) -> float:
        """The sandbox's CPU over pass 2's wall time (it has nothing to do in pass 1)."""
        return self.sandbox_cpu_s / self.pass2_s if self.pass2_s > 0 else 0.0

    @property
    def sandbox_cpu_per_100k_rows(self) -> float:
        return self.sandbox_cpu_s * 100_000 / self.rows if self.rows else 0.0

    @property
    def batchupsert_calls(self) -> int:
        return int(self.sandbox_stats.get("calls", {}).get(BATCHUPSERT, 0))

    @property
    def rows_sent(self) -> int:
        sizes = self.sandbox_stats.get("batch_sizes", {}).get(BATCHUPSERT, {})
        return int(sizes.get("total", 0))

    @property
    def fewest_calls(self) -> int:
        """``ceil(loaded / 1000)``: every loaded row in full calls of 1000."""
        return math.ceil(self.accounting["loaded"] / UPSERT_ROWS)

    @property
    def calls_for_valid_rows(self) -> int:
        """``ceil(valid / 1000)``: the rows that passed validation, duplicates included."""
        return math.ceil(self.generated.valid / UPSERT_ROWS)

    @property
    def achieved_rate(self) -> float:
        return float(self.sandbox_stats.get("achieved_rate", 0.0))

    @property
    def accounting_adds_up(self) -> bool:
        a = self.accounting
        return a["input"] == a["loaded"] + a["rejected"] + a["duplicates"]

    @property
    def matches_generator(self) -> bool:
        g, a = self.generated, self.accounting
        expected = (g.rows, g.loaded, g.invalid, g.duplicates)
        return (a["input"], a["loaded"], a["rejected"], a["duplicates"]) == expected

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["generated"] = {
            "rows": self.generated.rows,
            "invalid": self.generated.invalid,
            "duplicates": self.generated.duplicates,
            "loaded": self.generated.loaded,
            "size_bytes": self.generated.size_bytes,
        }
        data.update(
            rows_per_s=round(self.rows_per_s, 1),
            client_cpu_per_100k_rows=round(self.client_cpu_per_100k_rows, 3),
            sandbox_busy=round(self.sandbox_busy, 3),
            sandbox_busy_in_pass2=round(self.sandbox_busy_in_pass2, 3),
            sandbox_cpu_per_100k_rows=round(self.sandbox_cpu_per_100k_rows, 3),
            batchupsert_calls=self.batchupsert_calls,
            rows_sent=self.rows_sent,
            fewest_calls=self.fewest_calls,
            calls_for_valid_rows=self.calls_for_valid_rows,
            achieved_rate=round(self.achieved_rate, 3),
            accounting_adds_up=self.accounting_adds_up,
            matches_generator=self.matches_generator,
        )
        return data


def measure_import(
    sandbox: SandboxProcess, case: str, spec: ImportSpec, generated: GeneratedCsv
) -> ImportMeasurement:
    job = {"kind": "import", "spec": asdict(spec)}
    result, sandbox_cpu, sandbox_stats = run_worker(sandbox, "salesmanago", job)
    summary = result["summary"]
    details = summary["details"]
    return ImportMeasurement(
        case=case,
        spec=spec,
        generated=generated,
        accounting={k: int(details[k]) for k in ("input", "loaded", "rejected", "duplicates")},
        duration_s=float(result["wall_s"]),
        client_requests=int(summary["requests"]),
        client_rate_limited=int(summary["rate_limited"]),
        client_retries=int(summary["retries"]),
        client_cpu_s=float(result["cpu_s"]),
        client_peak_rss_mb=float(result["peak_rss_mb"]),
        client_baseline_rss_mb=float(result["baseline_rss_mb"]),
        sandbox_cpu_s=sandbox_cpu,
        sandbox_stats=sandbox_stats,
        pass1_s=float(details.get("pass1_s", 0.0)),
        pass2_s=float(details.get("pass2_s", 0.0)),
    )


# -- tables -------------------------------------------------------------------------------------
THROUGHPUT_COLUMNS = (
    "case",
    "rows in",
    "duration s",
    "pass 1 s",
    "pass 2 s",
    "rows/s",
    "HTTP req",
    "batchupsert calls",
    "rows/call",
    "client CPU s",
    "CPU s/100k rows",
    "client peak RSS MB",
    "sandbox CPU s",
    "sandbox CPU s/100k rows",
    "sandbox busy %",
    "sandbox busy in pass 2 %",
)
ACCOUNTING_COLUMNS = (
    "case",
    "input",
    "loaded",
    "rejected",
    "duplicates",
    "input = sum",
    "generator expected (loaded/rejected/dup)",
    "as expected",
)
QUOTA_COLUMNS = (
    "quota",
    "client",
    "rows in",
    "loaded",
    "duration s",
    "HTTP req",
    "429s",
    "429s after 1 s",
    "retries",
    "req/s",
    "req/s ÷ quota",
    "batchupsert calls",
    "ceil(loaded/1000)",
    "ceil(valid/1000)",
)


def throughput_row(m: ImportMeasurement) -> list[Any]:
    calls = m.batchupsert_calls
    return [
        m.case,
        m.rows,
        m.duration_s,
        m.pass1_s,
        m.pass2_s,
        m.rows_per_s,
        int(m.sandbox_stats.get("requests", 0)),
        calls,
        m.rows_sent / calls if calls else 0.0,
        m.client_cpu_s,
        m.client_cpu_per_100k_rows,
        m.client_peak_rss_mb,
        m.sandbox_cpu_s,
        m.sandbox_cpu_per_100k_rows,
        100 * m.sandbox_busy,
        100 * m.sandbox_busy_in_pass2,
    ]


def accounting_row(m: ImportMeasurement) -> list[Any]:
    a, g = m.accounting, m.generated
    return [
        m.case,
        a["input"],
        a["loaded"],
        a["rejected"],
        a["duplicates"],
        "yes" if m.accounting_adds_up else "NO",
        f"{g.loaded:,} / {g.invalid:,} / {g.duplicates:,}",
        "yes" if m.matches_generator else "NO",
    ]


def quota_row(m: ImportMeasurement) -> list[Any]:
    return [
        f"{QUOTA_RATE:g} req/s, burst {QUOTA_BURST}, {QUOTA_LATENCY * 1000:.0f} ms",
        f"paced {m.spec.rate:g}/s, burst {m.spec.burst}",
        m.rows,
        m.accounting["loaded"],
        m.duration_s,
        int(m.sandbox_stats.get("requests", 0)),
        int(m.sandbox_stats.get("rate_limited", 0)),
        int(m.sandbox_stats.get("rate_limited_after_first_second", 0)),
        m.client_retries,
        m.achieved_rate,
        f"{100 * m.achieved_rate / QUOTA_RATE:.0f}%",
        m.batchupsert_calls,
        m.fewest_calls,
        m.calls_for_valid_rows,
    ]


# -- the benchmark ------------------------------------------------------------------------------
def run(
    *,
    rows: int = DEFAULT_ROWS,
    quota_rows: int | None = None,
    max_in_flight: int = 8,
    seed: int = 2026,
    profile_dir: Path | None = None,
    skip_quota: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; returns what ``results/import_throughput.json`` holds."""
    quota_rows = rows if quota_rows is None else quota_rows
    measurements: list[ImportMeasurement] = []
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="crm-etl-bench-csv-") as tmp:
        note(f"{NAME}: generating {rows:,} rows")
        main_csv = generate(Path(tmp) / "contacts.csv", rows, seed=seed)
        unpaced = ImportSpec(csv=str(main_csv.path), max_in_flight=max_in_flight)
        with SandboxProcess(EMPTY_ACCOUNT) as sandbox:
            m = measure_import(sandbox, "unpaced, empty account", unpaced, main_csv)
            note(f"{NAME}: unpaced: {m.rows:,} rows in {m.duration_s:.1f} s")
            measurements.append(m)
        if profile_dir is not None:  # a separate run: profiling slows the measured one down
            profile_dir.mkdir(parents=True, exist_ok=True)
            path = profile_dir / f"{NAME}-unpaced.prof"
            with SandboxProcess(EMPTY_ACCOUNT) as sandbox:
                spec = replace(unpaced, profile=str(path))
                profiled = measure_import(sandbox, "unpaced, profiled", spec, main_csv)
            note(f"{NAME}: profiled run: {profiled.duration_s:.1f} s, profile in {path}")
            profile = {
                "path": str(path),
                "duration_s": round(profiled.duration_s, 3),
                "top_costs": [
                    {"function": f, "calls": c, "own_s": round(o, 3), "cumulative_s": round(u, 3)}
                    for f, c, o, u in top_costs(path, 20)
                ],
            }
        if not skip_quota:
            quota_csv = main_csv
            if quota_rows != rows:
                note(f"{NAME}: generating {quota_rows:,} rows for the quota case")
                quota_csv = generate(Path(tmp) / "quota.csv", quota_rows, seed=seed)
            settings = SandboxSettings(
                contacts=0,
                activities=0,
                sales=0,
                rate=QUOTA_RATE,
                burst=QUOTA_BURST,
                latency=QUOTA_LATENCY,
            )
            paced = ImportSpec(
                csv=str(quota_csv.path), rate=QUOTA_RATE, burst=1, max_in_flight=max_in_flight
            )
            with SandboxProcess(settings) as sandbox:
                m = measure_import(sandbox, f"quota {QUOTA_RATE:g} req/s", paced, quota_csv)
                note(f"{NAME}: quota: {m.rows:,} rows in {m.duration_s:.1f} s")
                measurements.append(m)
    quota = [m for m in measurements if m.spec.rate is not None]
    return {
        "settings": {
            "rows": rows,
            "quota_rows": None if skip_quota else quota_rows,
            "seed": seed,
            "file_bytes": main_csv.size_bytes,
            "client_max_in_flight": max_in_flight,
            "quota_rate": QUOTA_RATE,
            "quota_burst": QUOTA_BURST,
            "quota_latency": QUOTA_LATENCY,
            "client_rate_in_quota_case": QUOTA_RATE,
            "default_region": "DE",
            "duplicates": "last",
        },
        "runs": [m.as_dict() for m in measurements],
        "quota": [
            {
                "utilisation": round(m.achieved_rate / QUOTA_RATE, 3),
                "rate_limited": int(m.sandbox_stats.get("rate_limited", 0)),
                "batchupsert_calls": m.batchupsert_calls,
                "fewest_calls": m.fewest_calls,
                "calls_for_valid_rows": m.calls_for_valid_rows,
                "fewest_possible": m.batchupsert_calls == m.fewest_calls,
            }
            for m in quota
        ],
        "profile": profile,
        "tables": {
            "throughput": {
                "columns": list(THROUGHPUT_COLUMNS),
                "rows": [throughput_row(m) for m in measurements],
            },
            "accounting": {
                "columns": list(ACCOUNTING_COLUMNS),
                "rows": [accounting_row(m) for m in measurements],
            },
            "quota": {"columns": list(QUOTA_COLUMNS), "rows": [quota_row(m) for m in quota]},
        },
    }


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    """Lines for the combined summary of ``python -m benchmarks``."""
    lines = []
    for run_ in result["runs"]:
        stats = run_["sandbox_stats"]
        a = run_["accounting"]
        figures = (
            f"{run_['batchupsert_calls']} batchupsert calls (fewest {run_['fewest_calls']}), "
            f"loaded {a['loaded']:,} + rejected {a['rejected']:,} + dup {a['duplicates']:,}"
        )
        if run_["spec"]["rate"] is None:
            busy = 100 * run_["sandbox_busy"]
            figures += (
                f", client CPU {run_['client_cpu_per_100k_rows']:.2f} s/100k rows, peak RSS "
                f"{run_['client_peak_rss_mb']:.0f} MB, sandbox busy {busy:.0f}%"
            )
        else:
            figures += (
                f", req/s ÷ quota {100 * run_['achieved_rate'] / QUOTA_RATE:.0f}%, "
                f"{stats['rate_limited']} x 429"
            )
        lines.append(
            SummaryRow(
                case=f"SALESmanago CSV import, {run_['case']}",
                rows=a["input"],
                duration_s=run_["duration_s"],
                requests=stats["requests"],
                figures=figures,
            )
        )
    return lines


def report(result: dict[str, Any]) -> None:
    settings = result["settings"]
    tables = result["tables"]
    size_mb = settings["file_bytes"] / 1e6
    print_table(
        f"CSV import into SALESmanago: {settings['rows']:,} generated rows ({size_mb:.1f} MB), "
        "default region DE, duplicates: last wins",
        tables["throughput"]["columns"],
        tables["throughput"]["rows"],
    )
    print_table(
        "Row accounting (input = loaded + rejected + duplicates)",
        tables["accounting"]["columns"],
        tables["accounting"]["rows"],
    )
    if tables["quota"]["rows"]:
        print_table(
            "Import under a quota (req/s is the sandbox's own, first request to last)",
            tables["quota"]["columns"],
            tables["quota"]["rows"],
        )
    if result["profile"]:
        print_profile(Path(result["profile"]["path"]), 20)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of the CSV file")
    parser.add_argument(
        "--quota-rows", type=int, default=None, help="rows for the quota case (default: --rows)"
    )
    parser.add_argument("--no-quota", action="store_true", help="skip the quota case")
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026, help="seed of the generated file")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="also profile one unpaced import (cProfile, all threads) into DIR",
    )
    args = parser.parse_args(argv)
    with exit_on_failure():
        result = run(
            rows=args.rows,
            quota_rows=args.quota_rows,
            max_in_flight=args.max_in_flight,
            seed=args.seed,
            profile_dir=args.profile,
            skip_quota=args.no_quota,
        )
    path = write_results(NAME, result)
    report(result)
    note(f"results: {path}")


if __name__ == "__main__":
    main()
