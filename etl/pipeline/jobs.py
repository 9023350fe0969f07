"""From a validated spec to a runnable job, and from a job to its runner.

The spec says *what* (connections as ``${VAR}`` references, paths as written); a job holds *how*
(resolved client configs, absolute paths). Resolution happens here, when the run starts, so a
missing environment variable is reported before any request is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from etl.pipeline.export import ExportJob, run_export
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.migrate import MigrationJob, run_migration
from etl.pipeline.run import RunProgress, RunSummary
from etl.pipeline.spec import TABLES, Connection, PipelineSpec
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
) -> Job:
    """Build the job a spec describes; ``retarget`` may swap connections (e.g. to a sandbox)."""
    assert spec.destination is not None  # every kind requires it (validated on load)
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
    )


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
