"""What every benchmark shares: a sandbox in its own process, measured exports, results output.

The sandbox runs in a separate process (``crm-etl sandbox --json``) so that its CPU time can be
read from ``/proc`` apart from the client's, and so that a server-bound result is visible as such.
Each measured export runs in a fresh child process too (:mod:`benchmarks._worker`), whose own
``getrusage(RUSAGE_SELF)`` gives the client's peak RSS and CPU seconds without the parent's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

Crm = Literal["salesmanago", "salesnexus"]
CRMS: tuple[Crm, ...] = ("salesmanago", "salesnexus")
CRM_TITLES: dict[str, str] = {"salesmanago": "SALESmanago", "salesnexus": "SalesNexus"}

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
SANDBOX_START_TIMEOUT = 300.0
EXPORT_TIMEOUT = 600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Wide enough for every column when the output goes to a file or a pipe (rich says 80 there).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 220)
progress_console = Console(stderr=True, highlight=False)

# No proxy, ever: every request of a benchmark stays on loopback.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchmarkError(RuntimeError):
    """A benchmark could not run (the sandbox did not start, an export failed)."""


def note(message: str) -> None:
    """A progress line on stderr, so stdout carries only the tables."""
    progress_console.print(f"[dim]{message}[/dim]")


def check_loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BenchmarkError(f"refusing a non-loopback URL: {url}")
    return url


# -- the sandbox, in its own process ------------------------------------------------------------
@dataclass(frozen=True)
class SandboxSettings:
    """The ``crm-etl sandbox`` flags a benchmark needs."""

    contacts: int
    activities: int
    sales: int
    rate: float | None = None
    burst: int | None = None
    latency: float = 0.0
    seed: int = 42

    def flags(self) -> list[str]:
        flags = [
            f"--seed={self.seed}",
            f"--contacts={self.contacts}",
            f"--activities={self.activities}",
            f"--sales={self.sales}",
            f"--latency={self.latency}",
            "--host=127.0.0.1",
        ]
        if self.rate is not None:
            flags.append(f"--rate={self.rate}")
        if self.burst is not None:
            flags.append(f"--burst={self.burst}")
        return flags


class SandboxProcess:
    """``with SandboxProcess(settings) as sandbox:`` serves both emulators from a child process."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.info: dict[str, dict[str, str]] = {}
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchmarkError("the sandbox is not running")
        return self._proc.pid

    def start(self) -> None:
        command = [
            sys.executable,
            "-c",
            "from etl.cli.main import cli; cli()",
            "sandbox",
            "--json",
            *self.settings.flags(),
        ]
        # Lives as long as the sandbox; closed in stop(). Read only to explain a failed start.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        started = time.monotonic()
        self._proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL
        )
        line = self._read_line(SANDBOX_START_TIMEOUT)
        try:
            info = json.loads(line)
        except ValueError as exc:
            self.stop()
            raise BenchmarkError(f"the sandbox printed no JSON line: {exc}") from None
        for crm in CRMS:
            check_loopback(info[crm]["base_url"])
        self.info = info
        self.startup_seconds = time.monotonic() - started

    def _read_line(self, timeout: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise BenchmarkError(f"the sandbox did not start within {timeout:.0f} s")
            ready, _, _ = select.select([self._proc.stdout], [], [], min(remaining, 1.0))
            if ready:
                line = self._proc.stdout.readline()
                if line:
                    return line
            if self._proc.poll() is not None:
                tail = self._stderr_tail()
                self.stop()
                raise BenchmarkError(f"the sandbox exited at start: {tail}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the sandbox tells ---------------------------------------------------------------
    def base_url(self, crm: Crm) -> str:
        return self.info[crm]["base_url"]

    def _admin(self, crm: Crm, action: str, method: str) -> dict[str, Any]:
        url = check_loopback(f"{self.base_url(crm)}/_sandbox/{action}")
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with _LOCAL.open(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self, crm: Crm) -> dict[str, Any]:
        """The emulator's ``RequestStats`` since its last reset."""
        return self._admin(crm, "stats", "GET")

    def reset(self, crm: Crm) -> None:
        """Fresh statistics and a full quota bucket (the seeded data stays)."""
        self._admin(crm, "reset", "POST")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the sandbox process has used, from ``/proc/<pid>/stat``."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
        return (utime + stime) / CLOCK_TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


# -- a measured export, in a fresh child process -----------------------------------------------
@dataclass(frozen=True)
class ExportSpec:
    """One export as the worker runs it; ``rate=None`` switches client pacing off."""

    crm: Crm
    tables: Sequence[str] = ("contacts", "activities", "sales")
    page_size: int = 1000
    rate: float | None = None
    burst: int = 1
    max_in_flight: int = 8
    calls_per_request: int = 25
    profile: str | None = None


@dataclass(frozen=True)
class ExportMeasurement:
    """What one export cost, from the client's side and from the sandbox's."""

    spec: ExportSpec
    rows: dict[str, int]
    duration_s: float
    client_requests: int
    client_calls: int
    client_rate_limited: int
    client_retries: int
    client_cpu_s: float
    client_peak_rss_mb: float
    client_baseline_rss_mb: float
    sandbox_cpu_s: float
    sandbox_stats: dict[str, Any] = field(repr=False)
    durations_s: tuple[float, ...] = ()  # of every repeat, when the case ran more than once

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_s(self) -> float:
        return self.total_rows / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def client_cpu_per_100k_rows(self) -> float:
        return self.client_cpu_s * 100_000 / self.total_rows if self.total_rows else 0.0

    @property
    def sandbox_requests(self) -> int:
        return int(self.sandbox_stats.get("requests", 0))

    @property
    def sandbox_rate_limited(self) -> int:
        return int(self.sandbox_stats.get("rate_limited", 0))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec"]["tables"] = list(self.spec.tables)
        data["total_rows"] = self.total_rows
        data["rows_per_s"] = round(self.rows_per_s, 1)
        data["client_cpu_per_100k_rows"] = round(self.client_cpu_per_100k_rows, 3)
        return data


def run_worker(
    sandbox: SandboxProcess, crm: Crm, job: dict[str, Any]
) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Reset ``crm``'s emulator, run ``job`` in a fresh ``benchmarks._worker`` process.

    ``job`` gets the connection, an output directory and a result path added. Returns the
    worker's result, the sandbox CPU seconds spent meanwhile and the emulator's statistics.
    """
    sandbox.reset(crm)
    with tempfile.TemporaryDirectory(prefix="crm-etl-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        job = {
            **job,
            "connection": sandbox.info[crm],
            "out": str(Path(tmp) / "out"),
            "result": str(result_path),
        }
        cpu_before = sandbox.cpu_seconds()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._worker"],
            input=json.dumps(job).encode(),  # credentials on stdin, never on a command line
            capture_output=True,
            cwd=REPO_ROOT,
            timeout=EXPORT_TIMEOUT,
            check=False,
        )
        sandbox_cpu = sandbox.cpu_seconds() - cpu_before
        if proc.returncode != 0 or not result_path.exists():
            tail = proc.stderr.decode(errors="replace")[-3000:]
            raise BenchmarkError(f"the benchmark worker failed (exit {proc.returncode}):\n{tail}")
        result = json.loads(result_path.read_text())
    return result, sandbox_cpu, sandbox.stats(crm)


def measure_export(sandbox: SandboxProcess, spec: ExportSpec) -> ExportMeasurement:
    """Reset the emulator's stats and quota, run ``spec`` in a fresh process, read both sides."""
    job = {"kind": "export", "spec": {**asdict(spec), "tables": list(spec.tables)}}
    result, sandbox_cpu, sandbox_stats = run_worker(sandbox, spec.crm, job)
    summary = result["summary"]
    return ExportMeasurement(
        spec=spec,
        rows=dict(summary["rows"]),
        duration_s=float(result["wall_s"]),
        client_requests=int(summary["requests"]),
        client_calls=int(summary["calls"]),
        client_rate_limited=int(summary["rate_limited"]),
        client_retries=int(summary["retries"]),
        client_cpu_s=float(result["cpu_s"]),
        client_peak_rss_mb=float(result["peak_rss_mb"]),
        client_baseline_rss_mb=float(result["baseline_rss_mb"]),
        sandbox_cpu_s=sandbox_cpu,
        sandbox_stats=sandbox_stats,
    )


def measure_median(sandbox: SandboxProcess, spec: ExportSpec, repeat: int) -> ExportMeasurement:
    """Run ``spec`` ``repeat`` times; the run of median duration, with every duration attached."""
    runs = sorted((measure_export(sandbox, spec) for _ in range(max(1, repeat))), key=_duration)
    median = runs[(len(runs) - 1) // 2]
    return replace(median, durations_s=tuple(round(m.duration_s, 3) for m in runs))


def _duration(m: ExportMeasurement) -> float:
    return m.duration_s


# -- output ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    """One line of the combined summary of ``python -m benchmarks``."""

    case: str
    rows: int | None
    duration_s: float | None
    requests: int | None
    figures: str

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or not self.duration_s:
            return None
        return self.rows / self.duration_s


def carry_over_runs(
    runs: list[dict[str, Any]], settings: dict[str, Any], previous: Path, same: Sequence[str]
) -> list[dict[str, Any]]:
    """``runs`` plus, from the ``previous`` results when their ``same`` settings match, the runs
    of the kinds (export, import) this run skipped, marked ``carried_over``: exports and imports
    can then be re-measured apart."""
    measured = {r["kind"] for r in runs}
    try:
        before = json.loads(previous.read_text())
    except (OSError, ValueError):
        return runs
    if any(before.get("settings", {}).get(k) != settings[k] for k in same):
        return runs
    kept = [
        {**r, "carried_over": r.get("carried_over") or before.get("finished_at", True)}
        for r in before.get("runs", [])
        if r.get("kind") not in measured
    ]
    return [*runs, *kept]


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` atomically (a ``.tmp`` file renamed into place)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine_info(),
        **payload,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def machine_info() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": sys.platform,
        "load_average": [round(x, 2) for x in os.getloadavg()],  # others sharing the CPUs
    }


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        numeric = any(
            isinstance(row[index], int | float) and not isinstance(row[index], bool) for row in rows
        )
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(fmt(value) for value in row))
    console.print(table)


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@contextlib.contextmanager
def exit_on_failure() -> Iterator[None]:
    """A benchmark that cannot run says why on stderr and exits 1, without a traceback."""
    try:
        yield
    except BenchmarkError as exc:
        progress_console.print(f"[red]benchmark failed:[/red] {exc}", markup=True)
        raise SystemExit(1) from None
