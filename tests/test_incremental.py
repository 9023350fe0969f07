"""Incremental exports: the first run is a full read that sets the watermark; later runs hold
exactly what changed (new and modified records) plus tombstones for deletions, in their own
files beside the earlier runs'.

Expectations come from the emulators' stores through the plain-Python expectations of
``test_export`` (never through the transforms).
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from etl.clients import RetryPolicy
from etl.load import manifest_counts_match, read_manifest
from etl.pipeline.export import ExportJob, run_export
from etl.pipeline.jobs import job_from_spec
from etl.pipeline.run import RunInterrupted
from etl.pipeline.snapshots import CrossRunState, IncrementalSettings
from etl.pipeline.spec import SpecError, parse_spec
from etl.sandbox import FaultConfig, SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from tests.support import sm_config, sn_config
from tests.test_export import Expected, Row, assert_rows, sm_expected, sn_expected, visible_files

TABLES = ("contacts", "activities", "sales")
SEEDED = SandboxConfig(contacts=300, activities=600, sales=150)
SETTINGS = IncrementalSettings(lag_seconds=2, window_seconds=1, snapshot_every=1)


def job(out: Path, crm: str, connection: Any, run_id: str, **overrides: Any) -> ExportJob:
    values: dict[str, Any] = {
        "pipeline": f"incremental_{crm}",
        "crm": crm,
        "connection": connection,
        "out": out,
        "page_size": 50,
        "mode": "incremental",
        "incremental": SETTINGS,
        "run_id": run_id,
    }
    return ExportJob(**{**values, **overrides})


def run_rows(out: Path, run_id: str) -> dict[str, list[Row]]:
    """Every row of one run's files (as its manifest lists them), per table."""
    manifest = read_manifest(out / "_runs" / run_id / "manifest.json")
    assert manifest_counts_match(out, manifest) == []
    rows: dict[str, list[Row]] = {}
    for table, entry in manifest.tables.items():
        rows[table] = []
        for file in entry.files:
            assert f"part-{run_id}-" in file.path
            for row in pq.read_table(out / file.path).to_pylist():
                row["properties"] = dict(row["properties"] or [])
                rows[table].append(row)
    return rows


def window_of(out: Path, run_id: str) -> dict[str, Any]:
    manifest = json.loads((out / "_runs" / run_id / "manifest.json").read_text(encoding="utf-8"))
    return manifest["window"]


def assert_delta(
    rows: dict[str, list[Row]],
    live: Expected,
    tombstones: dict[str, set[str]],
    *,
    source: str,
    deleted_at_ms: int,
) -> None:
    """Live rows equal ``live`` field by field; tombstones are exactly ``tombstones``."""
    for table in TABLES:
        alive = [r for r in rows[table] if r["deleted_at"] is None]
        dead = [r for r in rows[table] if r["deleted_at"] is not None]
        assert_rows(alive, live[table], table)
        assert sorted(r["source_id"] for r in dead) == sorted(tombstones[table]), table
        for row in dead:
            assert row["source"] == source
            assert int(row["deleted_at"].timestamp() * 1000) == deleted_at_ms
            rest = {k: v for k, v in row.items() if k not in ("source", "source_id", "deleted_at")}
            assert rest == dict.fromkeys(rest, None) | {"properties": {}}, row


def owned_by(expected: Expected, contact_ids: set[str]) -> Expected:
    """The contacts of ``contact_ids`` and their activities and sales."""
    return {
        "contacts": {k: v for k, v in expected["contacts"].items() if k in contact_ids},
        "activities": {
            k: v for k, v in expected["activities"].items() if v["contact_id"] in contact_ids
        },
        "sales": {k: v for k, v in expected["sales"].items() if v["contact_id"] in contact_ids},
    }


def watermarks(out: Path) -> dict[str, int]:
    with CrossRunState(out) as state:
        return state.watermarks()


# --- SALESmanago ----------------------------------------------------------------------------


def pick_contacts(store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A contact with two notes or more (to modify) and one with notes and purchases (to
    delete)."""
    contacts = list(store.contacts.values())
    changed = next(c for c in contacts if len(c["contactNotes"]) >= 2)
    deleted = next(
        c
        for c in contacts
        if c is not changed
        and c["contactNotes"]
        and any(e["contactExtEventType"] == "PURCHASE" for e in c["contactExtEvents"])
    )
    return changed, deleted


async def test_salesmanago_second_run_holds_exactly_the_changes(tmp_path: Path) -> None:
    async with SalesManagoEmulator(SEEDED) as sm:
        connection = sm_config(sm)
        first = await run_export(job(tmp_path, "salesmanago", connection, "run-1"))
        before = sm_expected(sm.store)
        changed, deleted = pick_contacts(sm.store)
        # renamed, and its last note removed: that note becomes a tombstone
        dropped_note = f"{changed['id']}:note:{len(changed['contactNotes']) - 1}"
        kept_notes = changed["contactNotes"][:1]
        sm.store.modify(changed["id"], name="Renamed Person", contactNotes=kept_notes)
        added = sm.store.add_contact(email="new.contact@example.org", name="New Contact")
        sm.store.delete(deleted["id"])
        second = await run_export(job(tmp_path, "salesmanago", connection, "run-2"))
        after = sm_expected(sm.store)

    assert first.rows == {"contacts": 300, "activities": 600, "sales": 150}
    assert_rows(run_rows(tmp_path, "run-1")["contacts"], before["contacts"], "contacts")
    one, two = window_of(tmp_path, "run-1"), window_of(tmp_path, "run-2")
    assert (one["baseline"], one["streams"]["contacts"]["from_ms"], one["snapshot"]) == (
        True,
        None,
        None,
    )

    gone = {deleted["id"]}
    tombstones = {
        "contacts": gone,
        "activities": {k for k, v in before["activities"].items() if v["contact_id"] in gone}
        | {dropped_note},
        "sales": {k for k, v in before["sales"].items() if v["contact_id"] in gone},
    }
    live = owned_by(after, {changed["id"], added})
    rows = run_rows(tmp_path, "run-2")
    deleted_at = two["snapshot"]["at_ms"]
    assert_delta(rows, live, tombstones, source="salesmanago", deleted_at_ms=deleted_at)
    assert second.rows == {t: len(live[t]) + len(tombstones[t]) for t in TABLES}
    assert two["tombstones"] == {t: len(tombstones[t]) for t in TABLES}
    assert two["snapshot"]["against_run_id"] == "run-1"

    # the window: from the first run's watermark minus the lag, in windows of at most 1 s
    start, end = one["streams"]["contacts"]["to_ms"] - 2000, two["streams"]["contacts"]["to_ms"]
    assert two["streams"]["contacts"] == {"from_ms": start, "to_ms": end}
    windows = two["windows"]
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert all(0 < hi - lo <= 1000 for lo, hi in windows)
    assert watermarks(tmp_path) == {"contacts": end}
    # a delta is added beside the earlier runs' files, never replacing them
    runs = ("run-1", "run-2")
    manifests = [read_manifest(tmp_path / "_runs" / r / "manifest.json") for r in runs]
    listed = [f.path for m in manifests for t in m.tables.values() for f in t.files]
    data = [p for p in visible_files(tmp_path) if not p.startswith("_state/")]  # readers skip _*
    assert sorted(listed) == data


async def test_salesmanago_deletions_wait_for_the_snapshot_run(tmp_path: Path) -> None:
    every_other = replace(SETTINGS, snapshot_every=2)
    async with SalesManagoEmulator(SEEDED) as sm:
        connection = sm_config(sm, pacing=sm_config(sm).pacing)
        _, deleted = pick_contacts(sm.store)
        await run_export(job(tmp_path, "salesmanago", connection, "run-1", incremental=every_other))
        before = sm_expected(sm.store)
        sm.store.delete(deleted["id"])
        second = await run_export(
            job(tmp_path, "salesmanago", connection, "run-2", incremental=every_other)
        )
        listings_before = len(sm.stats.batch_sizes["contact/paginatedContactList"])
        third = await run_export(
            job(tmp_path, "salesmanago", connection, "run-3", incremental=every_other)
        )
        listed = len(sm.stats.batch_sizes["contact/paginatedContactList"]) - listings_before

    assert second.rows == {"contacts": 0, "activities": 0, "sales": 0}
    assert window_of(tmp_path, "run-2")["snapshot"] is None
    assert listed >= 299 // 50 + 1  # the third run lists every contact
    gone = {deleted["id"]}
    tombstones = {
        "contacts": gone,
        "activities": {k for k, v in before["activities"].items() if v["contact_id"] in gone},
        "sales": {k for k, v in before["sales"].items() if v["contact_id"] in gone},
    }
    empty: Expected = {t: {} for t in TABLES}
    at_ms = window_of(tmp_path, "run-3")["snapshot"]["at_ms"]
    rows = run_rows(tmp_path, "run-3")
    assert_delta(rows, empty, tombstones, source="salesmanago", deleted_at_ms=at_ms)
    assert third.rows == {t: len(tombstones[t]) for t in TABLES}


async def test_an_interrupted_incremental_run_resumes_without_losing_or_repeating(
    tmp_path: Path,
) -> None:
    rate = 0.2
    seed = next(s for s in range(1000) if random.Random(s).random() >= rate)  # not the 1st
    async with SalesManagoEmulator(SEEDED) as sm:
        await run_export(job(tmp_path, "salesmanago", sm_config(sm), "run-1"))
        touched = [c["id"] for c in list(sm.store.contacts.values())[:80]]
        for n, contact_id in enumerate(touched):
            sm.store.modify(contact_id, score=1000 + n)
        sm.config = replace(sm.config, faults=FaultConfig(server_error=rate, seed=seed))
        one_attempt = RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.01)
        interrupted = job(tmp_path, "salesmanago", sm_config(sm, retry=one_attempt), "run-2")
        with pytest.raises(RunInterrupted) as caught:
            await run_export(interrupted)
        sm.config = replace(sm.config, faults=FaultConfig())
        resumed = job(tmp_path, "salesmanago", sm_config(sm), "ignored")
        summary = await run_export(replace(resumed, resume_from=caught.value.run_dir))
        after = sm_expected(sm.store)

    assert summary.run_id == "run-2" and summary.details["attempts"] == 2
    live = owned_by(after, set(touched))
    none: dict[str, set[str]] = {t: set() for t in TABLES}
    at_ms = window_of(tmp_path, "run-2")["snapshot"]["at_ms"]
    assert_delta(run_rows(tmp_path, "run-2"), live, none, source="salesmanago", deleted_at_ms=at_ms)


# --- SalesNexus -----------------------------------------------------------------------------


async def test_salesnexus_second_run_holds_exactly_the_changes(tmp_path: Path) -> None:
    async with SalesNexusEmulator(SEEDED) as sn:
        connection = sn_config(sn)
        first = await run_export(job(tmp_path, "salesnexus", connection, "run-1"))
        store = sn.store
        field = store.field_id
        ids = store.ordered_ids()
        changed, deleted = ids[3], ids[7]
        store.modify_contact(changed, {field("contact", "Company"): "Changed Co"})
        added = store.add_contact(
            {field("contact", "Email"): "new@example.org", field("contact", "Full Name"): "New"}
        )
        store.delete_contact(deleted)
        activity = next(iter(store.activities))
        store.update_activity(activity, {"result": "Changed result"})
        sale = store.add_sale(
            {
                str(field("sales", "Contact ID")): changed,
                str(field("sales", "Amount")): "12.50",
                str(field("sales", "Status")): "1",
            }
        )
        second = await run_export(job(tmp_path, "salesnexus", connection, "run-2"))
        after = sn_expected(store)
        sizes = {"contacts": len(store.contacts), "activities": 600, "sales": 151}

    assert first.rows == {"contacts": 300, "activities": 600, "sales": 150}
    one, two = window_of(tmp_path, "run-1"), window_of(tmp_path, "run-2")
    assert one["baseline"] is True and two["baseline"] is False
    live: Expected = {
        "contacts": {k: after["contacts"][k] for k in (changed, added)},
        "activities": {activity: after["activities"][activity]},
        "sales": {sale: after["sales"][sale]},
    }
    tombstones = {"contacts": {deleted}, "activities": set(), "sales": set()}
    at_ms = two["snapshot"]["at_ms"]
    rows = run_rows(tmp_path, "run-2")
    assert_delta(rows, live, tombstones, source="salesnexus", deleted_at_ms=at_ms)
    assert second.rows == {"contacts": 3, "activities": 1, "sales": 1}
    assert two["snapshot"]["against_run_id"] == "run-1"
    for table in TABLES:
        assert two["streams"][table]["from_ms"] == one["streams"][table]["to_ms"]
        assert two["streams"][table]["to_ms"] > two["streams"][table]["from_ms"]
    assert watermarks(tmp_path) == {t: two["streams"][t]["to_ms"] for t in TABLES}
    with CrossRunState(tmp_path) as state:  # the new snapshot: one hash per live row
        assert {t: len(state.hashes(t)) for t in TABLES} == sizes
        assert deleted not in state.hashes("contacts") and added in state.hashes("contacts")


# --- the spec -------------------------------------------------------------------------------

SPEC = """
[pipeline]
name = "nightly_delta"
kind = "export"

[source]
crm = "salesnexus"
token = "${SALESNEXUS_TOKEN}"

[export]
%s

[destination]
path = "out"
"""


def test_the_export_section_configures_incremental_runs(tmp_path: Path) -> None:
    keys = 'mode = "incremental"\nlag_seconds = 60\nwindow_seconds = 3600\nsnapshot_every = 3'
    spec = parse_spec(SPEC % f"{keys}\ncheckpoint_pages = 4", origin="delta.toml")
    built = job_from_spec(spec, {"SALESNEXUS_TOKEN": "t"}, cwd=tmp_path)
    assert isinstance(built, ExportJob)
    assert (built.mode, built.checkpoint_pages) == ("incremental", 4)
    assert built.incremental == IncrementalSettings(60, 3600, 3)
    plain = job_from_spec(parse_spec(SPEC % "", origin="full.toml"), {"SALESNEXUS_TOKEN": "t"})
    assert isinstance(plain, ExportJob)
    assert (plain.mode, plain.checkpoint_pages, plain.incremental) == (
        "full",
        10,
        IncrementalSettings(),
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(SPEC % "lag_seconds = 60\nsnapshot_every = 2", origin="x.toml")
    assert caught.value.problems == [
        'x.toml: [export] lag_seconds and snapshot_every: only used when mode = "incremental"'
    ]
    with pytest.raises(SpecError) as caught:
        parse_spec(SPEC % 'mode = "delta"\nwindow_seconds = 0', origin="x.toml")
    assert caught.value.problems == [
        "x.toml: [export] mode: must be one of full, incremental (got 'delta')",
        "x.toml: [export] window_seconds: must be at least 1 (got 0)",
    ]
