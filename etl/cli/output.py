"""How the CLI talks: logging setup and live progress.

On a terminal, long work shows a live line with rows, requests, 429s and retries. Off a terminal
(cron, CI) the same figures go out as plain log lines every few seconds, or as JSON lines with
``--log-format json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

from rich import box
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from etl.pipeline.run import RunProgress, RunSummary

LogFormat = Literal["text", "json"]
log = logging.getLogger("etl")

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(data, ensure_ascii=False, default=str)


def interactive(stream: object = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def configure_logging(fmt: LogFormat = "text", *, verbose: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif interactive():
        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def progress_line(progress: RunProgress) -> dict[str, object]:
    totals = progress.transport_totals()
    return {
        "pipeline": progress.pipeline,
        "rows": dict(progress.rows),
        "pages": progress.pages,
        "requests": int(totals.get("requests", 0)),
        "rate_limited": int(totals.get("rate_limited", 0)),
        "retries": int(totals.get("retries", 0)),
        "elapsed_s": round(progress.elapsed, 1),
    }


def _progress_table(progress: RunProgress) -> Table:
    line = progress_line(progress)
    rows = line["rows"]
    assert isinstance(rows, dict)
    total = sum(rows.values())
    rate = total / progress.elapsed if progress.elapsed > 0 else 0.0
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{progress.pipeline}[/]",
        " ".join(f"{name}={count:,}" for name, count in rows.items()) or "starting…",
        f"{rate:,.0f} rows/s",
        f"requests={line['requests']:,}",
        f"429s={line['rate_limited']}",
        f"retries={line['retries']}",
        f"{line['elapsed_s']}s",
    )
    return table


@contextlib.asynccontextmanager
async def show_progress(progress: RunProgress, fmt: LogFormat) -> AsyncIterator[None]:
    """Live progress while the body runs: a redrawn line on a terminal, log lines elsewhere."""
    if fmt == "text" and interactive():
        with Live(_progress_table(progress), console=Console(stderr=True), transient=True) as live:

            async def redraw() -> None:
                while True:
                    await asyncio.sleep(0.25)
                    live.update(_progress_table(progress))

            task = asyncio.create_task(redraw())
            try:
                yield
            finally:
                task.cancel()
        return

    async def report() -> None:
        while True:
            await asyncio.sleep(5.0)
            line = progress_line(progress)
            if fmt == "json":
                log.info("progress", extra=line)
            else:
                log.info(
                    "%s: rows %s, requests %s, 429s %s, retries %s",
                    progress.pipeline,
                    line["rows"],
                    line["requests"],
                    line["rate_limited"],
                    line["retries"],
                )

    task = asyncio.create_task(report())
    try:
        yield
    finally:
        task.cancel()


def summary_table(summaries: list[RunSummary]) -> Table:
    """One row per run: rows per table, speed, API usage and time."""
    tables = list(dict.fromkeys(name for s in summaries for name in s.rows))
    table = Table(title="Run summary", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("pipeline", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in (*tables, "rows/s", "requests", "429s", "retries", "time"):
        table.add_column(column, justify="right", no_wrap=True)
    for s in summaries:
        table.add_row(
            s.pipeline,
            s.status,
            *(f"{s.rows[name]:,}" if name in s.rows else "-" for name in tables),
            f"{s.rows_per_second:,.0f}",
            f"{s.requests:,}",
            str(s.rate_limited),
            str(s.retries),
            f"{s.duration_s:.1f}s",
        )
    return table


def print_summaries(summaries: list[RunSummary], fmt: LogFormat) -> None:
    if fmt == "json":
        for summary in summaries:
            print(json.dumps({"summary": summary.as_dict()}, ensure_ascii=False))
        return
    console = Console(width=150) if not interactive(sys.stdout) else Console()
    if console.width >= 100:
        console.print(summary_table(summaries))
    else:  # a narrow terminal: one block per run reads better than a squeezed table
        for s in summaries:
            rows = ", ".join(f"{name} {count:,}" for name, count in s.rows.items())
            console.print(
                f"[bold]{s.pipeline}[/] {s.status}: {rows}; {s.rows_per_second:,.0f} rows/s; "
                f"requests {s.requests:,}, 429s {s.rate_limited}, retries {s.retries}; "
                f"{s.duration_s:.1f}s",
                highlight=False,
            )
    for s in summaries:
        console.print(f"{s.pipeline}: {s.out}", highlight=False, soft_wrap=True)
        for line in accounting_lines(s):
            console.print(f"  {line}", highlight=False, soft_wrap=True)


def accounting_lines(summary: RunSummary) -> list[str]:
    """The row accounting a write run proves: every input row loaded, rejected or dropped."""
    d = summary.details
    lines: list[str] = []
    if "input" in d:
        if d.get("dry_run"):
            lines.append(
                f"input {d['input']:,} = would load {d['would_load']:,} + rejected "
                f"{d['rejected']:,} + duplicates {d['duplicates']:,}"
            )
        else:
            split = (
                f"  (created {d['created']:,}, updated {d['updated']:,})"
                if d.get("created") or d.get("updated")
                else ""
            )
            lines.append(
                f"input {d['input']:,} = loaded {d['loaded']:,} + rejected {d['rejected']:,} "
                f"+ duplicates {d['duplicates']:,}{split}"
            )
    if d.get("write_requests") is not None and d.get("dry_run"):
        seconds = d.get("estimated_seconds")
        timing = f", about {seconds:,.0f}s at the configured rate" if seconds else ""
        lines.append(f"would send {d['write_requests']:,} write requests{timing}")
    for key in ("rejected", "skipped"):
        value = d.get(key)
        if isinstance(value, dict) and any(value.values()):
            counts = ", ".join(f"{table} {n:,}" for table, n in value.items() if n)
            lines.append(f"{key}: {counts}")
    for key in ("success_file", "rejects_file", "crosswalk"):
        if d.get(key):
            lines.append(f"{key.replace('_', ' ')}: {d[key]}")
    return lines
