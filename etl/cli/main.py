"""``crm-etl``: the command line.

Every command turns bad input into a one-line error and a documented exit code (see
:mod:`etl.cli.exit_codes`); a traceback appears only for a bug, and only with ``--verbose``.

A run that stops early (the CRM kept failing beyond the retry budget, or SIGINT/SIGTERM) saves
its state, prints the exact command that resumes it (the same command line plus
``--resume RUN_DIR``) and exits 75. A second signal exits at once (130); the state is still
consistent (SQLite WAL, one transaction per record).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shlex
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from etl import __version__
from etl.cli.connections import (
    DEMO_SANDBOX,
    CrmName,
    connection_from_env,
    optional_sandbox,
    point_at_sandbox,
)
from etl.cli.exit_codes import ExitCode
from etl.cli.output import LogFormat, configure_logging, print_summaries, show_progress
from etl.cli.sandbox_cmd import sandbox as sandbox_command
from etl.clients import (
    AuthenticationError,
    CRMError,
    RetryBudgetExhausted,
    SalesNexusClient,
    SalesNexusConfig,
)
from etl.extract.csv_input import InputFileError
from etl.pipeline.jobs import Job, describe, job_from_spec, run_dir, run_job
from etl.pipeline.run import RunInterrupted, RunProgress, RunSummary
from etl.pipeline.spec import (
    Connection,
    PipelineSpec,
    SpecError,
    load_spec,
    validate_spec,
)
from etl.pipeline.state import ResumeError, RunState
from etl.runtime import release_freed_memory
from etl.sandbox import Sandbox
from etl.transform import TABLES
from etl.transform.contact_input import MappingError

log = logging.getLogger("etl.cli")
T = TypeVar("T")

CRMS = ("salesmanago", "salesnexus")
ARGV_KEY = "crm_etl.argv"
RESUMABLE_STATUSES = ("interrupted", "running", "failed")


class RunFailed(click.ClickException):
    """A failure with a plain message and our own exit code (click prints ``Error: ...``)."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = int(code)


class _Cancelled(Exception):
    """The run was cancelled by a signal; its state (if any) is in ``run_dir``."""

    def __init__(self, run_dir: Path | None) -> None:
        super().__init__("cancelled")
        self.run_dir = run_dir


class _SignalGuard:
    """SIGINT/SIGTERM while a command runs: the first cancels its task (the runner saves its
    state and stops), a second exits at once."""

    def __init__(self) -> None:
        self.received: str | None = None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig, task)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, not main thread
                continue
            installed.append(sig)
        try:
            return await coro
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
                if self.received is not None:  # stopping already: another signal ends it now
                    signal.signal(sig, self._exit_now)

    def _on_signal(self, sig: signal.Signals, task: asyncio.Task[Any]) -> None:
        if self.received is not None:
            self._exit_now(sig, None)
        self.received = sig.name
        log.warning(
            "%s: stopping and saving the run's state (send it again to stop at once)", sig.name
        )
        task.cancel()

    @staticmethod
    def _exit_now(signum: int, _frame: object) -> None:
        os.write(2, f"\n{signal.Signals(signum).name} again: stopping at once\n".encode())
        os._exit(130)


def _resume_command(run_dir: Path) -> str | None:
    """The command line that was run plus ``--resume run_dir`` (None: this command has no
    ``--resume``, e.g. ``demo``); without a recorded command line, a description of it."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and not any(p.name == "resume" for p in ctx.command.params):
        return None
    argv = ctx.meta.get(ARGV_KEY) if ctx is not None else None
    if argv is None:
        return f"the same command with --resume {shlex.quote(str(run_dir))}"
    return shlex.join(["crm-etl", *_without_resume(argv), "--resume", str(run_dir)])


def _without_resume(argv: Sequence[str]) -> list[str]:
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            args.append(arg)
    return args


def _interrupted(reason: str, run_dir: Path | None) -> RunFailed:
    """Exit 75 with the command that resumes the run, when its state says it can resume."""
    status = RunState.status_of(run_dir) if run_dir is not None else None
    command = _resume_command(run_dir) if run_dir is not None else None
    if run_dir is None or command is None or status not in RESUMABLE_STATUSES:
        return RunFailed(f"{reason}; run the same command again", ExitCode.RESUMABLE)
    return RunFailed(
        f"{reason}; the run's state is saved in {run_dir}.\nResume it with:\n  {command}",
        ExitCode.RESUMABLE,
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, mapping every expected failure to a message and exit code."""
    guard = _SignalGuard()
    try:
        return asyncio.run(guard.run(coro))
    except RunInterrupted as exc:
        raise _interrupted(exc.reason, exc.run_dir) from None
    except _Cancelled as exc:
        raise _interrupted(f"interrupted by {guard.received or 'a signal'}", exc.run_dir) from None
    except asyncio.CancelledError:
        raise _interrupted(f"interrupted by {guard.received or 'a signal'}", None) from None
    except ResumeError as exc:
        raise RunFailed(str(exc), ExitCode.USAGE) from None
    except SpecError as exc:
        code = ExitCode.CREDENTIALS if "environment variable" in str(exc) else ExitCode.USAGE
        raise RunFailed(str(exc), code) from None
    except (InputFileError, MappingError) as exc:
        raise RunFailed(str(exc), ExitCode.USAGE) from None
    except AuthenticationError as exc:
        raise RunFailed(str(exc), ExitCode.CREDENTIALS) from None
    except RetryBudgetExhausted as exc:
        raise RunFailed(
            f"{exc}. The CRM kept failing or throttling; run the same command again later.",
            ExitCode.RESUMABLE,
        ) from None
    except CRMError as exc:
        raise RunFailed(str(exc), ExitCode.CRM_ERROR) from None
    except KeyboardInterrupt:  # before the signal handlers were installed
        raise RunFailed("interrupted; run the same command again", ExitCode.RESUMABLE) from None
    except (click.ClickException, click.exceptions.Exit):
        raise
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        raise RunFailed(
            f"internal error: {type(exc).__name__}: {exc} (re-run with --verbose for details)",
            ExitCode.INTERNAL,
        ) from None


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-format`` and ``--verbose`` on every command that does work."""

    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Plain text (a live progress line on a terminal) or one JSON object per line.",
    )
    @click.option("-v", "--verbose", is_flag=True, help="Debug logging (never shows secrets).")
    @functools.wraps(command)
    def wrapper(*args: Any, log_format: LogFormat, verbose: bool, **kwargs: Any) -> Any:
        configure_logging(log_format, verbose=verbose)
        return command(*args, log_format=log_format, **kwargs)

    return wrapper


class _Cli(click.Group):
    """The root group; it remembers the command line, so an interrupted run can print the exact
    command that resumes it."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        argv = list(args)
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta[ARGV_KEY] = argv
        return ctx


def _resume_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--resume",
        "resume",
        metavar="RUN_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=help_text,
    )


@click.group(
    cls=_Cli,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="crm-etl")
def cli() -> None:
    """Move CRM data in bulk between SALESmanago, SalesNexus and files.

    \b
    Quick start (no account needed, everything runs against built-in emulators):
      crm-etl demo                       run every shipped pipeline against the sandbox
      crm-etl run pipelines/nightly_export_salesmanago.toml --sandbox
      crm-etl sandbox                    serve both emulators for your own experiments

    Credentials come from environment variables named in the pipeline spec; see the README.
    """
    release_freed_memory()


cli.add_command(sandbox_command)


# --- run ----------------------------------------------------------------------------------------


async def _run_spec(
    spec: PipelineSpec,
    *,
    sandbox: Sandbox | None,
    out: Path | None,
    log_format: LogFormat,
    dry_run: bool = False,
    cwd: Path | None = None,
    resume: Path | None = None,
) -> RunSummary:
    if dry_run and spec.kind == "export":
        raise SpecError(f"{spec.origin}: --dry-run applies to import and migrate pipelines")

    def retarget(connection: Connection) -> Connection:
        return point_at_sandbox(connection, sandbox) if sandbox is not None else connection

    job = job_from_spec(
        spec, os.environ, out=out, cwd=cwd, dry_run=dry_run, retarget=retarget, resume=resume
    )
    log.info("%s: %s", spec.name, describe(job))
    progress = RunProgress(spec.name)
    try:
        async with show_progress(progress, log_format):
            summary = await run_job(job, progress)
    except asyncio.CancelledError:  # only a signal cancels a command: say how to resume
        raise _Cancelled(_state_dir(job)) from None
    log.info(
        "%s: %s, %s rows in %.1fs",
        spec.name,
        summary.status,
        sum(summary.rows.values()),
        summary.duration_s,
    )
    return summary


def _state_dir(job: Job) -> Path | None:
    return None if getattr(job, "dry_run", False) else run_dir(job)


def _dry_run_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dry-run",
        is_flag=True,
        help="Read and validate everything, count rejects and requests, write nothing.",
    )(command)


def _exit_for(summaries: list[RunSummary]) -> None:
    """Rows the CRM or the validation rejected make the exit code say so (5)."""
    if any(s.status == "partial" for s in summaries):
        raise click.exceptions.Exit(int(ExitCode.PARTIAL))


@cli.command(short_help="Run a pipeline spec (export, import or migrate).")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--sandbox",
    is_flag=True,
    help="Start seeded emulators in-process and point the spec's connections at them.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write outputs here instead of the spec's destination path.",
)
@_dry_run_option
@_resume_option(
    "Continue the interrupted run saved in RUN_DIR (printed when it stopped): an export's "
    "<out>/_runs/<run_id>, an import's or a migration's output directory."
)
@common_options
def run(
    spec_path: Path,
    sandbox: bool,
    out: Path | None,
    dry_run: bool,
    resume: Path | None,
    log_format: LogFormat,
) -> None:
    """Run the pipeline described by the TOML file SPEC (export, import or migrate).

    \b
    Examples:
      crm-etl run pipelines/nightly_export_salesnexus.toml
      crm-etl run pipelines/nightly_export_salesmanago.toml --sandbox --out /tmp/export
      crm-etl run pipelines/csv_to_salesmanago.toml --dry-run
      crm-etl run pipelines/csv_to_salesmanago.toml --resume runs/csv_to_salesmanago
    """

    _run_command(
        spec_path, sandbox=sandbox, out=out, log_format=log_format, dry_run=dry_run, resume=resume
    )


# --- export -------------------------------------------------------------------------------------


def _parse_tables(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    tables = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in tables if t not in TABLES]
    if unknown or not tables:
        raise click.BadParameter(
            f"unknown table(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(TABLES)}"
        )
    return tables


@cli.command(short_help="Export tables to a Parquet dataset or CSV files.")
@click.option("--from", "crm", type=click.Choice(CRMS), required=True, help="The CRM to read.")
@click.option(
    "--tables",
    default=",".join(TABLES),
    show_default=True,
    callback=_parse_tables,
    help="Comma-separated tables to export.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output root."
)
@click.option("--sandbox", is_flag=True, help="Export from in-process seeded emulators.")
@click.option(
    "--rate", type=float, default=5.0, show_default=True, help="Requests per second to allow."
)
@_resume_option("Continue the interrupted export saved in RUN_DIR (<out>/_runs/<run_id>).")
@common_options
def export(
    crm: CrmName,
    tables: tuple[str, ...],
    fmt: str,
    out: Path,
    sandbox: bool,
    rate: float,
    resume: Path | None,
    log_format: LogFormat,
) -> None:
    """Export tables from a CRM to a Parquet dataset or CSV files, without writing a spec.

    Credentials come from SALESMANAGO_CLIENT_ID, SALESMANAGO_API_KEY, SALESMANAGO_API_SECRET and
    SALESMANAGO_OWNER, or SALESNEXUS_EMAIL and SALESNEXUS_PASSWORD (plus the optional
    *_BASE_URL), unless --sandbox is given.
    """
    spec = _command_spec(
        {
            "pipeline": {"name": f"export_{crm}", "kind": "export"},
            "source": {**connection_from_env(crm).model_dump(), "pacing": {"rate": rate}},
            "export": {"tables": list(tables)},
            "destination": {"format": fmt, "path": str(out)},
        }
    )

    _run_command(spec, sandbox=sandbox, out=out, log_format=log_format, resume=resume)


# --- import -------------------------------------------------------------------------------------


def _read_mapping(path: Path | None) -> tuple[dict[str, str] | None, str | None]:
    """A mapping file: TOML with a ``[mapping]`` table and an optional ``default_region``."""
    if path is None:
        return None, None
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RunFailed(f"{path}: cannot read the mapping file: {exc}", ExitCode.USAGE) from None
    mapping = data.get("mapping", {})
    region = data.get("default_region")
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise RunFailed(f"{path}: [mapping] must map column names to targets", ExitCode.USAGE)
    return mapping, region if isinstance(region, str) else None


@cli.command("import", short_help="Import contacts from a CSV file into a CRM.")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "crm", type=click.Choice(CRMS), required=True, help="The CRM to load.")
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TOML file with a [mapping] table (column = target) overriding the automatic one.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/import"),
    show_default=True,
    help="Where success.csv, rejects.csv and summary.json go.",
)
@click.option(
    "--duplicates",
    type=click.Choice(["last", "reject"]),
    default="last",
    show_default=True,
    help="Duplicate emails: the last row wins, or later rows are rejected.",
)
@click.option(
    "--unmapped",
    type=click.Choice(["properties", "ignore"]),
    default="properties",
    show_default=True,
    help="Columns no rule maps: custom properties, or ignored.",
)
@click.option("--region", help="Default country (e.g. DE, US) to put phones in E.164 form.")
@click.option("--sandbox", is_flag=True, help="Import into in-process seeded emulators.")
@click.option(
    "--rate", type=float, default=5.0, show_default=True, help="Requests per second to allow."
)
@_dry_run_option
@_resume_option(
    "Continue the interrupted import whose outputs and state are in RUN_DIR (its --out): "
    "chunks the CRM already confirmed are not sent again."
)
@common_options
def import_(
    csv_path: Path,
    crm: CrmName,
    mapping_path: Path | None,
    out: Path,
    duplicates: str,
    unmapped: str,
    region: str | None,
    sandbox: bool,
    rate: float,
    dry_run: bool,
    resume: Path | None,
    log_format: LogFormat,
) -> None:
    """Import the contacts of a CSV file into a CRM, every row loaded or rejected with a reason.

    Headers are mapped automatically (First Name, E-mail, Phone 1, Zip/Postal Code, ...); the
    mapping used is printed. Credentials come from the environment as for `export`. An
    interrupted import prints the command that resumes it (the same one with --resume).
    """
    if resume is not None and _defaulted("out"):
        out = resume
    mapping, file_region = _read_mapping(mapping_path)
    section: dict[str, Any] = {
        "input": str(csv_path),
        "duplicates": duplicates,
        "unmapped": unmapped,
    }
    if mapping:
        section["mapping"] = mapping
    if region or file_region:
        section["default_region"] = region or file_region
    spec = _command_spec(
        {
            "pipeline": {"name": f"import_{crm}", "kind": "import"},
            "import": section,
            "target": {**connection_from_env(crm).model_dump(), "pacing": {"rate": rate}},
            "destination": {"path": str(out)},
        }
    )

    _run_command(
        spec, sandbox=sandbox, out=out, log_format=log_format, dry_run=dry_run, resume=resume
    )


def _defaulted(param: str) -> bool:
    """Whether the option ``param`` of the current command was left at its default."""
    source = click.get_current_context().get_parameter_source(param)
    return source in (None, click.core.ParameterSource.DEFAULT)


# --- migrate ------------------------------------------------------------------------------------


@cli.command(short_help="Move contacts, activities and sales between the CRMs.")
@click.option("--from", "source", type=click.Choice(CRMS), required=True, help="Read from.")
@click.option("--to", "target", type=click.Choice(CRMS), required=True, help="Write to.")
@click.option(
    "--tables",
    default=",".join(TABLES),
    show_default=True,
    callback=lambda ctx, param, value: _parse_tables(ctx, param, value),
    help="Comma-separated tables to migrate (contacts always go first).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where crosswalk.parquet and rejects.csv go [default: runs/migrate_FROM_to_TO].",
)
@click.option("--sandbox", is_flag=True, help="Migrate between in-process seeded emulators.")
@_dry_run_option
@_resume_option("Continue the interrupted migration whose outputs and state are in RUN_DIR.")
@common_options
def migrate(
    source: CrmName,
    target: CrmName,
    tables: tuple[str, ...],
    out: Path | None,
    sandbox: bool,
    dry_run: bool,
    resume: Path | None,
    log_format: LogFormat,
) -> None:
    """Move contacts, activities and sales from one CRM to the other, with an id crosswalk.

    Credentials of both come from the environment as for `export`. Re-running skips what the
    crosswalk already holds, so nothing is duplicated.
    """
    if source == target:
        raise click.BadParameter("--from and --to must be different CRMs", param_hint="--to")
    out = out or resume or Path(f"runs/migrate_{source}_to_{target}")
    spec = _command_spec(
        {
            "pipeline": {"name": f"migrate_{source}_to_{target}", "kind": "migrate"},
            "source": connection_from_env(source).model_dump(),
            "target": connection_from_env(target).model_dump(),
            "migrate": {"tables": list(tables)},
            "destination": {"path": str(out)},
        }
    )

    _run_command(
        spec, sandbox=sandbox, out=out, log_format=log_format, dry_run=dry_run, resume=resume
    )


def _run_command(
    spec: PipelineSpec | Path,
    *,
    sandbox: bool,
    out: Path | None,
    log_format: LogFormat,
    dry_run: bool = False,
    resume: Path | None = None,
) -> None:
    """Run one spec (or spec file) to the end: summary printed, exit code set (5: rejects)."""

    async def main() -> RunSummary:
        loaded = load_spec(spec) if isinstance(spec, Path) else spec
        async with optional_sandbox(sandbox) as emulators:
            return await _run_spec(
                loaded,
                sandbox=emulators,
                out=out,
                log_format=log_format,
                dry_run=dry_run,
                resume=resume,
            )

    summaries = [run_async(main())]
    print_summaries(summaries, log_format)
    _exit_for(summaries)


def _command_spec(data: dict[str, Any]) -> PipelineSpec:
    """A spec built from command-line options, validated like a file."""
    try:
        return validate_spec(data, origin="command line")
    except SpecError as exc:
        raise RunFailed(str(exc), ExitCode.USAGE) from None


# --- fields -------------------------------------------------------------------------------------


@cli.command(short_help="Print the SalesNexus field catalog.")
@click.option(
    "--from",
    "crm",
    type=click.Choice(["salesnexus"]),
    default="salesnexus",
    show_default=True,
    help="The CRM whose field catalog to print (SALESmanago has none).",
)
@click.option("--sandbox", is_flag=True, help="Read the catalog of the in-process emulator.")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@common_options
def fields(crm: str, sandbox: bool, as_json: bool, log_format: LogFormat) -> None:
    """Print the field catalog (id, name, table, type) that exports resolve names against."""

    async def main() -> list[dict[str, Any]]:
        async with optional_sandbox(sandbox) as emulators:
            connection = connection_from_env("salesnexus")
            if emulators is not None:
                connection = point_at_sandbox(connection, emulators)
            config = connection.client_config(os.environ)
            assert isinstance(config, SalesNexusConfig)
            async with SalesNexusClient(config) as client:
                return await client.get_all_fields()

    catalog = run_async(main())
    if as_json or log_format == "json":
        import json

        click.echo(json.dumps(catalog, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{crm} fields ({len(catalog)})", title_justify="left")
    for column in ("id", "name", "table", "type"):
        table.add_column(column)
    for field in sorted(catalog, key=lambda f: (str(f.get("table")), int(f.get("id", 0)))):
        table.add_row(
            str(field.get("id")),
            str(field.get("name")),
            str(field.get("table")),
            str(field.get("type")),
        )
    Console().print(table)


# --- demo ---------------------------------------------------------------------------------------


def shipped_pipelines() -> list[Path]:
    """The specs in ``pipelines/`` next to the package (a source checkout) or in the cwd."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        folder = base / "pipelines"
        if folder.is_dir():
            return sorted(folder.glob("*.toml"))
    return []


@cli.command(short_help="Run every shipped pipeline against built-in emulators.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("crm-etl-demo"),
    show_default=True,
    help="Directory for every pipeline's outputs (one folder per pipeline).",
)
@click.option(
    "--contacts",
    type=click.IntRange(1, 2_000_000),
    default=DEMO_SANDBOX.contacts,
    show_default=True,
    help="Contacts seeded into each emulator.",
)
@common_options
def demo(out: Path, contacts: int, log_format: LogFormat) -> None:
    """Run every shipped pipeline against in-process emulators and summarise.

    Nothing leaves this machine: both CRMs are emulated on 127.0.0.1 with a realistic quota.
    """
    specs = shipped_pipelines()
    if not specs:
        raise RunFailed("no pipelines/*.toml found next to the package or here", ExitCode.USAGE)
    config = dataclasses.replace(
        DEMO_SANDBOX, contacts=contacts, activities=contacts * 2, sales=contacts // 2
    )

    order = {"export": 0, "import": 1, "migrate": 2}
    loaded = sorted((load_spec(path) for path in specs), key=lambda s: (order[s.kind], s.name))
    root = specs[0].parent.parent  # inputs such as sample_data/ are relative to the checkout

    async def main() -> list[RunSummary]:
        summaries = []
        for spec in loaded:  # a freshly seeded pair of emulators each, so no run sees another's
            async with optional_sandbox(True, config) as emulators:
                summaries.append(
                    await _run_spec(
                        spec,
                        sandbox=emulators,
                        out=out / spec.name,
                        log_format=log_format,
                        cwd=root,
                    )
                )
        return summaries

    summaries = run_async(main())
    print_summaries(summaries, log_format)
    if log_format == "text":
        click.echo(f"\nDemo outputs are in {out.resolve()}")
