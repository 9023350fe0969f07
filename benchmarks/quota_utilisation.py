"""Quota utilisation: how much of a 20 req/s account quota an export turns into requests.

The sandbox answers over the quota (``--rate 20 --burst 20``) with 429 and adds 30 ms of latency
to every answer. The client is paced at the quota (20 req/s, burst 1). Figures:

* SALESmanago, contacts at 1000 per page: achieved requests/s ÷ quota and the 429 count, and
  separately the 429s answered after the first second (a pace that overshoots the quota).
* SALESmanago paced at 30 req/s against the real quota of 20: the adaptive pacer has to find the
  quota; its 429s, those after the first second, and the utilisation it still reaches.
* The pacer alone: a backlog of small ``paginatedContactList`` calls all issued at once, paced at
  the quota and at 30 req/s, from this process. The client does next to no work per call, so
  the figures are the pacer's, whatever an export's CPU (or a busy machine) does to the others.
* SalesNexus, whose quota counts HTTP requests, not calls: the same export with call packing
  (25 calls per request) and with one call per request; requests used and the speed-up. Run for
  contacts alone (the SALESmanago workload) and for all three tables, whose many more listing
  calls are what packing is for.

``req/s`` is the sandbox's own ``achieved_rate``: requests ÷ their span, from the first request of
the run to the last, as the sandbox received them; ``÷ quota`` divides it by the real quota.
``req past the end`` counts listing calls for pages beyond the data: the prefetch window asks for
pages before it knows where the data ends, and under a quota those requests cost slots.

    python -m benchmarks.quota_utilisation [--contacts 100000] [--salesnexus-tables contacts]

The default size is the issue's (100k contacts, 200k activities, 50k sales); all cases together
take about a minute and a half.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import SecretStr

from benchmarks.common import (
    CRM_TITLES,
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
from etl.clients import Pacing, SalesManagoClient, SalesManagoConfig

NAME = "quota_utilisation"
DEFAULT_CONTACTS = 100_000
QUOTA_RATE = 20.0
OVER_QUOTA_RATE = 30.0  # the adaptive case: configured pace above the account's real quota
QUOTA_BURST = 20
LATENCY = 0.03
PAGE_SIZE = 1000
ALL_TABLES = ("contacts", "activities", "sales")
TABLE_SETS = {"contacts": [("contacts",)], "all": [ALL_TABLES], "both": [("contacts",), ALL_TABLES]}
PACER_CALLS = 200
PACER_PAGE_SIZE = 50  # small pages: the client's own CPU stays out of the figures
PACER_COLUMNS = (
    "client",
    "calls",
    "duration s",
    "HTTP req",
    "429s",
    "429s after 1 s",
    "req/s",
    "req/s ÷ quota",
    "answered (not 429) ÷ quota",
    "client CPU s",
)
LISTING_CALLS = {
    "salesmanago": ("contact/paginatedContactList",),
    "salesnexus": ("get-contacts", "get-activities", "get-sales"),
}

COLUMNS = (
    "CRM",
    "tables",
    "client",
    "rows",
    "duration s",
    "HTTP req",
    "calls",
    "calls/req",
    "req past the end",
    "429s",
    "429s after 1 s",
    "req/s",
    "req/s ÷ quota",
    "rows/s",
    "client CPU s",
)


def achieved_rate(m: ExportMeasurement) -> float:
    """Requests/s as the sandbox saw them, first request to last (its ``achieved_rate``)."""
    return float(m.sandbox_stats.get("achieved_rate", 0.0))


def past_the_end(m: ExportMeasurement) -> int:
    """Listing calls beyond the pages that held data."""
    calls = m.sandbox_stats.get("calls", {})
    listing = sum(int(calls.get(name, 0)) for name in LISTING_CALLS[m.spec.crm])
    with_data = sum(math.ceil(rows / m.spec.page_size) for rows in m.rows.values())
    return listing - with_data


def late_429s(m: ExportMeasurement) -> int:
    """429s the sandbox answered more than a second after the run's first request."""
    return int(m.sandbox_stats.get("rate_limited_after_first_second", 0))


def calls_total(m: ExportMeasurement) -> int:
    return sum(int(v) for v in m.sandbox_stats.get("calls", {}).values())


def client_label(m: ExportMeasurement) -> str:
    label = f"paced {m.spec.rate:g}/s"
    if m.spec.crm == "salesnexus":
        label += f", {m.spec.calls_per_request} call(s)/req"
    return label


def tables_label(tables: Sequence[str]) -> str:
    return "all 3" if set(tables) == set(ALL_TABLES) else "+".join(tables)


def table_row(m: ExportMeasurement) -> list[Any]:
    requests = m.sandbox_requests
    rate = achieved_rate(m)
    return [
        CRM_TITLES[m.spec.crm],
        tables_label(m.spec.tables),
        client_label(m),
        m.total_rows,
        m.duration_s,
        requests,
        calls_total(m),
        calls_total(m) / requests if requests else 0.0,
        past_the_end(m),
        m.sandbox_rate_limited,
        late_429s(m),
        rate,
        f"{100 * rate / QUOTA_RATE:.0f}%",
        m.rows_per_s,
        m.client_cpu_s,
    ]


async def _paced_backlog(info: dict[str, str], rate: float, calls: int, in_flight: int) -> None:
    config = SalesManagoConfig(
        client_id=info["client_id"],
        api_key=SecretStr(info["api_key"]),
        api_secret=SecretStr(info["api_secret"]),
        owner=info["owner"],
        base_url=info["base_url"],
        pacing=Pacing(rate=rate, burst=1, max_in_flight=in_flight),
    )
    async with SalesManagoClient(config) as client:
        pages = range(calls)
        await asyncio.gather(*(client.paginated_contacts(n % 100, PACER_PAGE_SIZE) for n in pages))


def measure_pacer(
    sandbox: SandboxProcess, rate: float, calls: int, max_in_flight: int
) -> dict[str, Any]:
    """``calls`` calls issued at once from this process, paced at ``rate``; the sandbox's view."""
    sandbox.reset("salesmanago")
    cpu, started = time.process_time(), time.monotonic()
    asyncio.run(_paced_backlog(sandbox.info["salesmanago"], rate, calls, max_in_flight))
    duration, cpu = time.monotonic() - started, time.process_time() - cpu
    stats = sandbox.stats("salesmanago")
    achieved = float(stats.get("achieved_rate", 0.0))
    requests, refused = int(stats["requests"]), int(stats["rate_limited"])
    span = (requests - 1) / achieved if achieved else 0.0
    answered = (requests - refused) / span if span else 0.0  # requests that did work, per second
    return {
        "client_rate": rate,
        "calls": calls,
        "duration_s": round(duration, 3),
        "client_cpu_s": round(cpu, 3),
        "requests": requests,
        "rate_limited": refused,
        "rate_limited_after_first_second": int(stats.get("rate_limited_after_first_second", 0)),
        "achieved_rate": achieved,
        "utilisation": round(achieved / QUOTA_RATE, 3),
        "answered_utilisation": round(answered / QUOTA_RATE, 3),
    }


def pacer_row(run_: dict[str, Any]) -> list[Any]:
    return [
        f"paced {run_['client_rate']:g}/s",
        run_["calls"],
        run_["duration_s"],
        run_["requests"],
        run_["rate_limited"],
        run_["rate_limited_after_first_second"],
        run_["achieved_rate"],
        f"{100 * run_['utilisation']:.0f}%",
        f"{100 * run_['answered_utilisation']:.0f}%",
        run_["client_cpu_s"],
    ]


def run(
    *,
    contacts: int = DEFAULT_CONTACTS,
    activities: int | None = None,
    sales: int | None = None,
    salesnexus_tables: Sequence[Sequence[str]] = (("contacts",), ALL_TABLES),
    max_in_flight: int = 8,
    repeat: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns what ``results/quota_utilisation.json`` holds."""
    settings = SandboxSettings(
        contacts=contacts,
        activities=2 * contacts if activities is None else activities,
        sales=contacts // 2 if sales is None else sales,
        rate=QUOTA_RATE,
        burst=QUOTA_BURST,
        latency=LATENCY,
    )
    salesmanago = ExportSpec(
        crm="salesmanago",
        tables=("contacts",),
        page_size=PAGE_SIZE,
        rate=QUOTA_RATE,
        burst=1,
        max_in_flight=max_in_flight,
    )
    adaptive = replace(salesmanago, rate=OVER_QUOTA_RATE)
    specs = [salesmanago, adaptive]
    for tables in salesnexus_tables:
        for calls_per_request in (25, 1):
            specs.append(
                replace(
                    salesmanago,
                    crm="salesnexus",
                    tables=tuple(tables),
                    calls_per_request=calls_per_request,
                )
            )
    note(f"{NAME}: seeding the sandbox ({settings.contacts:,} contacts per CRM)")
    measurements: list[ExportMeasurement] = []
    with SandboxProcess(settings) as sandbox:
        for spec in specs:
            m = measure_median(sandbox, spec, repeat)
            label = f"{m.spec.crm} {tables_label(m.spec.tables)}, {client_label(m)}"
            note(f"{NAME}: {label}: {m.duration_s:.1f} s")
            measurements.append(m)
        pacer = []
        for rate in (QUOTA_RATE, OVER_QUOTA_RATE):
            pacer.append(measure_pacer(sandbox, rate, PACER_CALLS, max_in_flight))
            note(f"{NAME}: pacer alone at {rate:g}/s: {pacer[-1]['duration_s']:.1f} s")
    sm, over = measurements[0], measurements[1]
    pairs = zip(measurements[2::2], measurements[3::2], strict=True)
    packing = [
        {
            "tables": list(packed.spec.tables),
            "requests_packed": packed.sandbox_requests,
            "requests_one_call_each": single.sandbox_requests,
            "requests_saved_factor": round(single.sandbox_requests / packed.sandbox_requests, 2),
            "duration_packed_s": round(packed.duration_s, 3),
            "duration_one_call_each_s": round(single.duration_s, 3),
            "speed_up": round(single.duration_s / packed.duration_s, 2),
        }
        for packed, single in pairs
    ]
    return {
        "settings": {
            "contacts": settings.contacts,
            "activities": settings.activities,
            "sales": settings.sales,
            "quota_rate": QUOTA_RATE,
            "quota_burst": QUOTA_BURST,
            "latency": LATENCY,
            "page_size": PAGE_SIZE,
            "client_rate": QUOTA_RATE,
            "client_rate_over_quota": OVER_QUOTA_RATE,
            "client_burst": 1,
            "client_max_in_flight": max_in_flight,
            "repeat": repeat,
            "salesnexus_tables": [list(tables) for tables in salesnexus_tables],
        },
        "runs": [
            {
                **m.as_dict(),
                "achieved_rate": achieved_rate(m),
                "utilisation": achieved_rate(m) / QUOTA_RATE,
                "requests_past_the_end": past_the_end(m),
                "rate_limited_after_first_second": late_429s(m),
            }
            for m in measurements
        ],
        "salesmanago": {
            "utilisation": round(achieved_rate(sm) / QUOTA_RATE, 3),
            "rate_limited": sm.sandbox_rate_limited,
            "rate_limited_after_first_second": late_429s(sm),
        },
        "salesmanago_over_quota": {
            "client_rate": OVER_QUOTA_RATE,
            "utilisation": round(achieved_rate(over) / QUOTA_RATE, 3),
            "rate_limited": over.sandbox_rate_limited,
            "rate_limited_after_first_second": late_429s(over),
        },
        "salesnexus_packing": packing,
        "pacer_alone": pacer,
        "table": {"columns": list(COLUMNS), "rows": [table_row(m) for m in measurements]},
        "pacer_table": {"columns": list(PACER_COLUMNS), "rows": [pacer_row(r) for r in pacer]},
    }


def summary_rows(result: dict[str, Any]) -> list[SummaryRow]:
    """Lines for the combined summary of ``python -m benchmarks``."""
    lines = []
    for run_ in result["runs"]:
        spec = run_["spec"]
        case = f"{CRM_TITLES[spec['crm']]}, {tables_label(spec['tables'])}, 20 req/s quota"
        if spec["rate"] != QUOTA_RATE:
            case += f", paced at {spec['rate']:g}/s"
        if spec["crm"] == "salesnexus":
            case += f", {spec['calls_per_request']} call(s)/req"
        stats = run_["sandbox_stats"]
        lines.append(
            SummaryRow(
                case=case,
                rows=run_["total_rows"],
                duration_s=run_["duration_s"],
                requests=stats["requests"],
                figures=(
                    f"req/s ÷ quota {100 * run_['utilisation']:.0f}%, {stats['rate_limited']} x 429"
                    f" ({run_['rate_limited_after_first_second']} after 1 s)"
                ),
            )
        )
    for pacer in result["pacer_alone"]:
        lines.append(
            SummaryRow(
                case=f"pacer alone, paced at {pacer['client_rate']:g}/s, 20 req/s quota",
                rows=None,
                duration_s=pacer["duration_s"],
                requests=pacer["requests"],
                figures=(
                    f"req/s ÷ quota {100 * pacer['utilisation']:.0f}%, "
                    f"{pacer['rate_limited']} x 429 "
                    f"({pacer['rate_limited_after_first_second']} after 1 s)"
                ),
            )
        )
    for packing in result["salesnexus_packing"]:
        lines.append(
            SummaryRow(
                case=f"SalesNexus, {tables_label(packing['tables'])}: 25 vs 1 call(s)/req",
                rows=None,
                duration_s=None,
                requests=None,
                figures=(
                    f"{packing['requests_saved_factor']:.1f}x fewer HTTP requests, "
                    f"{packing['speed_up']:.2f}x faster"
                ),
            )
        )
    return lines


def report(result: dict[str, Any]) -> None:
    settings = result["settings"]
    title = (
        f"Quota utilisation: quota {settings['quota_rate']:g} req/s (burst "
        f"{settings['quota_burst']}), latency {settings['latency'] * 1000:.0f} ms, "
        f"{settings['contacts']:,} contacts, {settings['activities']:,} activities, "
        f"{settings['sales']:,} sales, page size {settings['page_size']}"
    )
    print_table(title, result["table"]["columns"], result["table"]["rows"])
    print_table(
        f"The pacer alone: {PACER_CALLS} calls issued at once, {PACER_PAGE_SIZE} contacts each",
        result["pacer_table"]["columns"],
        result["pacer_table"]["rows"],
    )
    rows: list[tuple[Any, ...]] = []
    for packing in result["salesnexus_packing"]:
        tables = tables_label(packing["tables"])
        rows.append((tables, 25, packing["requests_packed"], packing["duration_packed_s"]))
        rows.append(
            (tables, 1, packing["requests_one_call_each"], packing["duration_one_call_each_s"])
        )
        rows.append(
            (
                tables,
                "packing gain",
                f"{packing['requests_saved_factor']:.1f}x fewer",
                f"{packing['speed_up']:.2f}x faster",
            )
        )
    print_table(
        "SalesNexus call packing (its quota counts HTTP requests)",
        ("tables", "calls per request", "HTTP requests", "duration s"),
        rows,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quota_utilisation")
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS, help="e.g. 100000")
    parser.add_argument("--activities", type=int, default=None, help="default: 2 x contacts")
    parser.add_argument("--sales", type=int, default=None, help="default: contacts / 2")
    parser.add_argument(
        "--salesnexus-tables",
        choices=sorted(TABLE_SETS),
        default="both",
        help="SalesNexus exports: contacts alone, all three tables, or both (default)",
    )
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per case; the median duration is shown"
    )
    args = parser.parse_args(argv)
    with exit_on_failure():
        result = run(
            contacts=args.contacts,
            activities=args.activities,
            sales=args.sales,
            salesnexus_tables=TABLE_SETS[args.salesnexus_tables],
            max_in_flight=args.max_in_flight,
            repeat=args.repeat,
        )
    path = write_results(NAME, result)
    report(result)
    note(f"results: {path}")


if __name__ == "__main__":
    main()
