"""From a validated spec to a runnable job, and from a job to its runner.

The spec says *what* (connections as ``${VAR}`` references, paths as written); a job holds *how*
(resolved client configs, absolute paths). Resolution happens here, when the run starts, so a
missing environment variable is reported before any request is made.

Resuming: an export resumes from its run directory ``<out>/_runs/<run_id>``; an import or a
migration keeps its state in its output directory, so resuming one means writing there again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from etl.pipeline.export import ExportJob, run_export
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.migrate import MigrationJob, run_migration
from etl.pipeline.run import RunProgress, RunSummary
from etl.pipeline.spec import TABLES, Connection, PipelineSpec, SpecError
from etl.transform.contact_input import NormalizeOptions

Job = ExportJob | ImportJob | MigrationJob
Retarget = Callable[[Connection], Connection]


def _same(connection: Connection) -> Connection:
    return connection


def job_from_spec(
    spec: PipelineSpec,
    env: Mapping[str, str],
    *,
    out: Path | None = None,
    cwd: Path | None = None,
    dry_run: bool = False,
    retarget: Retarget = _same,
    resume: Path | None = None,
) -> Job:
    """Build the job a spec describes; ``retarget`` may swap connections (e.g. to a sandbox).

    ``resume`` is the run directory of an interrupted run to continue (see :func:`run_dir`).
    """
    assert spec.destination is not None  # every kind requires it (validated on load)
    if resume is not None:
        out = _resume_out(spec, out, resume, dry_run=dry_run)
    out = out if out is not None else spec.destination.resolved_path(cwd)
    if spec.kind == "export":
        assert spec.source is not None and spec.export is not None
        source = retarget(spec.source)
        return ExportJob(
            pipeline=spec.name,
            crm=source.crm,
            connection=source.client_config(env),
            out=out,
            tables=spec.export.tables,
            fmt=spec.destination.format,
            page_size=spec.export.page_size,
            prefetch_pages=spec.export.prefetch_pages,
            mode=spec.export.mode,
            checkpoint_pages=spec.export.checkpoint_pages,
            incremental=spec.export.incremental(),
            resume_from=resume,
        )
    if spec.kind == "import":
        section = spec.import_
        assert spec.target is not None and section is not None
        target = retarget(spec.target)
        return ImportJob(
            pipeline=spec.name,
            csv_path=section.resolved_input(cwd),
            target_crm=target.crm,
            target=target.client_config(env),
            out=out,
            mapping=dict(section.mapping) or None,
            unmapped=section.unmapped,
            options=NormalizeOptions(
                default_region=section.default_region, dayfirst=section.dayfirst
            ),
            duplicates=section.duplicates,
            dry_run=dry_run,
            resume=resume is not None,
        )
    assert spec.source is not None and spec.target is not None
    source, target = retarget(spec.source), retarget(spec.target)
    section = spec.migrate
    tables = section.tables if section is not None else TABLES
    properties = dict(section.properties) if section is not None else {}
    return MigrationJob(
        pipeline=spec.name,
        source_crm=source.crm,
        source=source.client_config(env),
        target_crm=target.crm,
        target=target.client_config(env),
        out=out,
        tables=tables,
        dry_run=dry_run,
        property_map=properties,
        resume=resume is not None,
    )


def _resume_out(
    spec: PipelineSpec, out: Path | None, resume: Path, *, dry_run: bool
) -> Path | None:
    """The output directory of a resumed run (an import's or a migration's is its run dir)."""
    if dry_run:
        raise SpecError(f"{spec.origin}: --resume cannot be combined with --dry-run")
    if spec.kind == "export":
        return out
    if out is not None and Path(out).resolve() != Path(resume).resolve():
        raise SpecError(
            f"--resume {resume}: a {spec.kind} run resumes in its output directory, which is "
            f"{out} here (give the same directory to both, or only --resume)"
        )
    return resume


def run_dir(job: Job) -> Path:
    """Where a job keeps its run state: what ``--resume`` takes to continue it."""
    if isinstance(job, ExportJob):
        if job.resume_from is not None:
            return Path(job.resume_from)
        return job.out / "_runs" / job.run_id
    return job.out


async def run_job(job: Job, progress: RunProgress | None = None) -> RunSummary:
    if isinstance(job, ExportJob):
        return await run_export(job, progress)
    if isinstance(job, ImportJob):
        return await run_import(job, progress)
    return await run_migration(job, progress)


def describe(job: Job) -> str:
    if isinstance(job, ExportJob):
        return f"exporting {', '.join(job.tables)} from {job.crm} to {job.out}"
    if isinstance(job, ImportJob):
        verb = "checking (dry run)" if job.dry_run else "importing"
        return f"{verb} {job.csv_path} into {job.target_crm}; outcomes in {job.out}"
    verb = "planning (dry run)" if job.dry_run else "migrating"
    return f"{verb} {', '.join(job.tables)} from {job.source_crm} to {job.target_crm}"
