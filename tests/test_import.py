"""CSV-to-CRM imports end to end: sample files into both emulators over loopback HTTP."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from etl.pipeline.imports import ImportJob, run_import
from etl.sandbox import FaultConfig, SalesManagoEmulator, SalesNexusEmulator, SandboxConfig
from etl.transform.contact_input import MappingError, NormalizeOptions
from tests.support import sm_config, sn_config

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
MESSY = SAMPLES / "contacts_messy.csv"
CLEAN = SAMPLES / "contacts_clean.csv"
MESSY_MAPPING = {
    "Customer Tier": "properties.Customer Tier",
    "Notes": "ignore",
}
MESSY_REJECTED_LINES = [27, 32, 37, 38, 40, 52, 59, 61, 72, 77, 78, 80, 108, 125]
MESSY_DROPPED_LAST = {68: 112, 73: 106, 79: 112}
DE = NormalizeOptions(default_region="DE")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def messy_rows() -> dict[int, dict[str, str]]:
    """The messy file's records keyed by the physical line each starts on."""
    rows: dict[int, dict[str, str]] = {}
    with MESSY.open(newline="", encoding="cp1252") as fh:
        reader = csv.reader(fh, delimiter=";")
        header = next(reader)
        start = reader.line_num + 1
        for record in reader:
            if any(cell.strip() for cell in record) and len(record) == len(header):
                rows[start] = dict(zip(header, record, strict=True))
            start = reader.line_num + 1
    return rows


async def test_messy_csv_into_salesmanago_loads_every_valid_row_once(tmp_path: Path) -> None:
    async with SalesManagoEmulator(SandboxConfig(contacts=0)) as sm:
        job = ImportJob(
            "messy",
            MESSY,
            "salesmanago",
            sm_config(sm),
            tmp_path,
            mapping=MESSY_MAPPING,
            options=DE,
        )
        summary = await run_import(job)
        store = sm.store
    d = summary.details
    assert (d["input"], d["loaded"], d["rejected"], d["duplicates"]) == (120, 103, 14, 3)
    assert d["input"] == d["loaded"] + d["rejected"] + d["duplicates"]
    assert summary.status == "partial"

    success = read_csv(tmp_path / "success.csv")
    rejects = read_csv(tmp_path / "rejects.csv")
    assert [int(r["line"]) for r in rejects if r["stage"] != "duplicate"] == MESSY_REJECTED_LINES
    dropped = {int(r["line"]): r["reason"] for r in rejects if r["stage"] == "duplicate"}
    assert sorted(dropped) == sorted(MESSY_DROPPED_LAST)
    for line, kept in MESSY_DROPPED_LAST.items():
        assert f"line {kept} is kept" in dropped[line]
    assert len(store.contacts) == 103 == len(success)
    assert Counter(c["email"] for c in store.contacts.values()).most_common(1)[0][1] == 1

    source = messy_rows()
    for row in success:
        original = source[int(row["line"])]
        stored = store.get_by_email(row["email"])
        assert stored is not None and stored["id"] == row["id"]
        assert row["email"] == original["E-mail"].strip().lower()
        city = original["City"].strip() or None
        assert stored["address"]["city"] == city
        tier = original["Customer Tier"].strip()
        props = {p["name"]: p["value"] for p in stored["properties"]}
        assert props == ({"Customer Tier": tier} if tier else {})
        assert "Notes" not in props  # ignored by the mapping
    # a "Last, First" full name is stored in reading order; the phone is E.164
    jager = store.get_by_email("soren.jager@web.de")
    assert jager["name"] == "Sören Jäger" and jager["phone"] == "+49307985555"
    assert (jager["birthdayYear"], jager["birthdayMonth"], jager["birthdayDay"]) == (1976, 7, 26)
    summary_file = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary_file["details"]["loaded"] == 103


async def test_clean_csv_into_salesnexus_maps_fields_by_name(tmp_path: Path) -> None:
    config = SandboxConfig(contacts=0, field_id_offset=500)
    async with SalesNexusEmulator(config) as sn:
        job = ImportJob(
            "clean",
            CLEAN,
            "salesnexus",
            sn_config(sn),
            tmp_path,
            mapping={"Loyalty Tier": "properties.Customer Tier"},
            options=DE,
        )
        summary = await run_import(job)
        store = sn.store
        field = {
            name: str(store.field_id("contact", name))
            for name in (
                "Email",
                "First Name",
                "Last Name",
                "Full Name",
                "Company",
                "City",
                "Customer Tier",
                "Birthday",
                "Tags",
            )
        }
    d = summary.details
    assert (d["input"], d["loaded"], d["rejected"], d["duplicates"]) == (200, 200, 0, 0)
    assert d["created"] == 200 and summary.status == "ok"
    source = pd.read_csv(CLEAN, dtype=str, keep_default_na=False)
    assert len(store.contacts) == 200
    for record in source.to_dict("records"):
        found = store.contact_by_email(record["Email"].strip().lower())
        assert found is not None
        stored = found[1]
        assert stored[field["First Name"]] == record["First Name"].strip()
        assert stored[field["Last Name"]] == record["Last Name"].strip()
        full = f"{record['First Name'].strip()} {record['Last Name'].strip()}"
        assert stored[field["Full Name"]] == full
        assert stored[field["City"]] == record["City"].strip()
        assert stored[field["Customer Tier"]] == record["Loyalty Tier"].strip()
        assert stored[field["Birthday"]] == record["Birthday"]
    outcome_ids = {r["id"] for r in read_csv(tmp_path / "success.csv")}
    assert outcome_ids == set(store.contacts)


async def test_rows_the_crm_refuses_are_rejects_with_its_message(tmp_path: Path) -> None:
    faults = FaultConfig(row_failure=0.25, seed=11)
    async with SalesManagoEmulator(SandboxConfig(contacts=0, faults=faults)) as sm:
        job = ImportJob("clean", CLEAN, "salesmanago", sm_config(sm), tmp_path, options=DE)
        summary = await run_import(job)
        emails_stored = {c["email"] for c in sm.store.contacts.values()}
    d = summary.details
    crm_rejects = [r for r in read_csv(tmp_path / "rejects.csv") if r["stage"] == "crm"]
    assert 0 < len(crm_rejects) == d["rejected"] and d["input"] == 200
    assert d["loaded"] + d["rejected"] == 200
    assert all(r["reason"] == "Internal error while saving the contact" for r in crm_rejects)
    success = read_csv(tmp_path / "success.csv")
    assert {r["email"] for r in success} == emails_stored
    lines = sorted(int(r["line"]) for r in success + crm_rejects)
    assert lines == list(range(2, 202))


async def test_dry_run_writes_nothing_and_counts_requests(tmp_path: Path) -> None:
    async with SalesManagoEmulator(SandboxConfig(contacts=0)) as sm:
        job = ImportJob(
            "messy",
            MESSY,
            "salesmanago",
            sm_config(sm),
            tmp_path,
            mapping=MESSY_MAPPING,
            options=DE,
            dry_run=True,
        )
        summary = await run_import(job)
        assert sm.stats.writes == 0 and sm.stats.requests == 0 and not sm.store.contacts
    d = summary.details
    assert (d["would_load"], d["rejected"], d["duplicates"], d["loaded"]) == (103, 14, 3, 0)
    assert d["write_requests"] == 1 and summary.status == "dry-run"


async def test_duplicate_policy_reject_keeps_the_first(tmp_path: Path) -> None:
    async with SalesManagoEmulator(SandboxConfig(contacts=0)) as sm:
        job = ImportJob(
            "messy",
            MESSY,
            "salesmanago",
            sm_config(sm),
            tmp_path,
            mapping=MESSY_MAPPING,
            options=DE,
            duplicates="reject",
        )
        summary = await run_import(job)
    dropped = {
        int(r["line"]): r["reason"]
        for r in read_csv(tmp_path / "rejects.csv")
        if r["stage"] == "duplicate"
    }
    assert sorted(dropped) == [79, 106, 112]
    assert "line 68 is kept" in dropped[112] and "line 73 is kept" in dropped[106]
    assert summary.details["loaded"] == 103


async def test_salesnexus_refuses_properties_it_has_no_field_for_before_writing(
    tmp_path: Path,
) -> None:
    async with SalesNexusEmulator(SandboxConfig(contacts=0)) as sn:
        job = ImportJob("clean", CLEAN, "salesnexus", sn_config(sn), tmp_path, options=DE)
        with pytest.raises(MappingError, match="no contact field named 'Loyalty Tier'"):
            await run_import(job)
        assert sn.stats.writes == 0
    assert not (tmp_path / "success.csv").exists()
