"""Runs one export or import in this (fresh) process and measures it.

``python -m benchmarks._worker``: the job's ``kind`` says which (``export`` if absent).

The job arrives as JSON on stdin (it carries the sandbox's demo credentials, which stay off any
command line); the result is written to the file the job names. Peak RSS and CPU seconds come
from ``getrusage(RUSAGE_SELF)``, so they are this client's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from benchmarks.profiling import ThreadedProfile
from etl.clients import Pacing, SalesManagoConfig, SalesNexusConfig
from etl.pipeline.export import ExportJob, run_export
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.run import RunSummary
from etl.runtime import release_freed_memory
from etl.transform.contact_input import NormalizeOptions


def build_connection(
    crm: str, info: dict[str, str], spec: dict[str, Any]
) -> SalesManagoConfig | SalesNexusConfig:
    pacing = Pacing(rate=spec["rate"], burst=spec["burst"], max_in_flight=spec["max_in_flight"])
    if crm == "salesmanago":
        return SalesManagoConfig(
            client_id=info["client_id"],
            api_key=SecretStr(info["api_key"]),
            api_secret=SecretStr(info["api_secret"]),
            owner=info["owner"],
            base_url=info["base_url"],
            pacing=pacing,
        )
    return SalesNexusConfig(
        email=info["email"],
        password=SecretStr(info["password"]),
        base_url=info["base_url"],
        calls_per_request=spec["calls_per_request"],
        pacing=pacing,
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a
    worker started by a bigger parent (one that just wrote a 2M-row CSV) reported the parent's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def export_job(job: dict[str, Any]) -> ExportJob:
    spec = job["spec"]
    return ExportJob(
        pipeline=f"bench-{spec['crm']}",
        crm=spec["crm"],
        connection=build_connection(spec["crm"], job["connection"], spec),
        out=Path(job["out"]),
        tables=tuple(spec["tables"]),
        page_size=spec["page_size"],
    )


def import_job(job: dict[str, Any]) -> ImportJob:
    """A CSV import (``spec`` names ``csv``, ``mapping``, ``default_region``, ``duplicates``)."""
    spec = job["spec"]
    return ImportJob(
        pipeline=f"bench-import-{spec['crm']}",
        csv_path=Path(spec["csv"]),
        target_crm=spec["crm"],
        target=build_connection(spec["crm"], job["connection"], spec),
        out=Path(job["out"]),
        mapping=spec.get("mapping"),
        options=NormalizeOptions(default_region=spec.get("default_region")),
        duplicates=spec.get("duplicates", "last"),
    )


async def run(job: dict[str, Any]) -> RunSummary:
    if job.get("kind") == "import":
        return await run_import(import_job(job))
    return await run_export(export_job(job))


def main() -> None:
    release_freed_memory()  # as the CLI does
    job = json.loads(sys.stdin.read())
    spec = job["spec"]
    baseline_rss = peak_rss_mb()  # the interpreter with pandas, pyarrow, aiohttp imported
    cpu_before = cpu_seconds()
    started = time.monotonic()
    profiling = (
        ThreadedProfile(Path(spec["profile"])) if spec.get("profile") else contextlib.nullcontext()
    )
    with profiling:
        summary = asyncio.run(run(job))
    wall = time.monotonic() - started
    result = {
        "summary": summary.as_dict(),
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu_before,
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": baseline_rss,
    }
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
