"""The migration's mapping rules: canonical tables to what the other CRM's write calls take.

Pure functions, no I/O. Contacts become the *contact load frame* of ``etl.load.crm_contacts``;
activities and sales become :class:`PlannedWrite` records (one API call each) or a
:class:`Reject` saying why they cannot move.

=========================  ==============================  ================================
source record              SALESmanago target              SalesNexus target
=========================  ==============================  ================================
SalesNexus activity        task (``updateTask``)           -
SALESmanago task           -                               activity (``create-activity``)
SALESmanago note           -                               note (``create-note``)
SALESmanago visit          -                               skipped: no counterpart
SalesNexus sale            PURCHASE ext event              -
SALESmanago PURCHASE       -                               sale (``create-sales-opp``)
=========================  ==============================  ================================
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from etl.transform.contact_input import CANONICAL_COLUMNS
from etl.transform.salesnexus import FieldCatalog

Crm = Literal["salesmanago", "salesnexus"]
RejectStatus = Literal["rejected", "failed", "skipped"]

# Strict enough for both CRMs (SALESmanago refuses a dot-less or dot-ended domain).
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_EMAIL_LENGTH = 255

# Canonical contact columns copied into the contact load frame as they are.
CONTACT_TEXT_COLUMNS = tuple(c for c in CANONICAL_COLUMNS if c not in ("email", "birthday", "tags"))

# The reference's limits for the values built here (texts copied as they are are left to the CRM,
# whose refusal lands in rejects with its message).
SM_TASK_NOTE_LIMIT = 2048
SM_EVENT_DESCRIPTION_LIMIT = 2048
SM_EVENT_PRODUCTS_LIMIT = 512
SM_DETAIL_LIMIT = 255
SM_DETAIL_COUNT = 20
SN_TEXT_LIMIT = 255

# ``updateTask`` requires a reminder; the reference allows 15_MIN, 30_MIN, 1_HOUR, 12_HOUR, 1_DAY
# and 1_WEEK, written with a leading underscore in its request sample (Java enum names).
REMINDER_TIMED = "_30_MIN"
REMINDER_TIMELESS = "_1_DAY"
SN_NOTE_TYPE = "General"
SN_STATUS_CODES = {"open": "0", "won": "1", "lost": "2"}

# Task ids derive from the source id, so a re-run updates the task instead of adding another.
TASK_ID_NAMESPACE = uuid.UUID("6f1c4e0a-7d3b-5b8e-9a41-2c7f0d9e3b15")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reject:
    """A source record that did not move: ``rejected`` before any call, ``failed`` when the CRM
    refused it, ``skipped`` when the target has no counterpart."""

    table: str
    source_id: str
    status: RejectStatus
    reason: str


@dataclass(frozen=True)
class TargetContact:
    """Where a source contact lives in the target: its id there and its (normalised) email."""

    id: str
    email: str | None


@dataclass(frozen=True)
class PlannedWrite:
    """One write call: ``kind`` is what the record becomes in the target (task, purchase,
    activity, note or sale); ``contact_id`` the target contact it belongs to and
    ``contact_email`` that contact's address (to look the record up when a run resumes)."""

    table: str
    source_id: str
    kind: str
    payload: dict[str, Any]
    contact_id: str
    contact_email: str | None = None


@dataclass
class RecordPlan:
    writes: list[PlannedWrite] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Unmappable(ValueError):
    """A record that cannot become a target record; the message is the reason."""


# -- small value helpers -----------------------------------------------------------------------
def normalize_email(value: Any) -> str | None:
    """Trimmed and lower-cased, or None when it is not a usable address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH or not EMAIL_RE.match(email):
        return None
    return email


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso_utc(moment: datetime) -> str:
    """``2026-11-23T09:30:00Z``: the SalesNexus time format (whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def yyyymmdd(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def task_id(source_crm: str, source_id: str) -> str:
    """The SALESmanago task id of a migrated activity: a UUID derived from its source id."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{source_crm}/activities/{source_id}"))


def _properties(value: Any) -> dict[str, str]:
    """A map column's value (Arrow gives a list of pairs) as a dict."""
    if not value:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    return {str(k): str(v) for k, v in value if v is not None}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


# -- contacts ----------------------------------------------------------------------------------
def contact_load_frame(
    contacts: pa.Table, property_map: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, list[Reject]]:
    """Canonical contacts to the contact load frame, plus the contacts that cannot be upserted.

    ``row`` is the contact's position in ``contacts`` and ``source_id`` rides along (the writers
    ignore it). Properties are renamed through ``property_map`` (source name -> target name).
    """
    renames = dict(property_map or {})
    records: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for row, contact in enumerate(contacts.to_pylist()):
        source_id = str(contact["source_id"])
        email = normalize_email(contact.get("email"))
        if email is None:
            raw = contact.get("email")
            reason = (
                "no email address"
                if not isinstance(raw, str) or not raw.strip()
                else f"invalid email address {clip(raw, 80)!r}"
            )
            rejects.append(
                Reject("contacts", source_id, "rejected", f"cannot upsert without email: {reason}")
            )
            continue
        record: dict[str, Any] = {"row": row, "source_id": source_id, "email": email}
        for column in CONTACT_TEXT_COLUMNS:
            record[column] = _text(contact.get(column))
        birthday = contact.get("birthday")
        record["birthday"] = yyyymmdd(birthday) if isinstance(birthday, date) else None
        record["tags"] = [t for t in contact.get("tags") or [] if t]
        record["properties"] = {
            renames.get(name, name): value
            for name, value in _properties(contact.get("properties")).items()
            if value != ""
        }
        records.append(record)
    columns = ["row", "source_id", "email", *CONTACT_TEXT_COLUMNS, "birthday", "tags", "properties"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["row"] = frame["row"].astype("int64")
    return frame, rejects


def full_names_only(frame: pd.DataFrame) -> pd.DataFrame:
    """For a CRM that stores one name: first and last name only where there is no full name, so
    the writers (which prefer "first last") keep the source's own full name."""
    out = frame.copy()
    named = out["name"].notna()
    out.loc[named, ["first_name", "last_name"]] = None
    return out


def property_names(frame: pd.DataFrame) -> list[str]:
    """Every property name used in the frame, sorted."""
    names: set[str] = set()
    for properties in frame["properties"]:
        names.update(properties)
    return sorted(names)


def without_properties(frame: pd.DataFrame, dropped: Iterable[str]) -> pd.DataFrame:
    """A copy of the frame whose properties lack the ``dropped`` names."""
    drop = set(dropped)
    out = frame.copy()
    out["properties"] = [
        {k: v for k, v in props.items() if k not in drop} for props in frame["properties"]
    ]
    return out


# -- activities and sales ------------------------------------------------------------------------
def _contact_for(
    record: Mapping[str, Any],
    contacts: Mapping[str, TargetContact],
    problems: Mapping[str, str],
) -> TargetContact:
    contact_id = _text(record.get("contact_id"))
    if contact_id is None:
        raise Unmappable("not linked to any contact")
    target = contacts.get(contact_id)
    if target is None:
        why = problems.get(contact_id, "it is not among the source's contacts")
        raise Unmappable(f"its contact {contact_id} was not migrated: {why}")
    return target


def salesmanago_task(
    activity: Mapping[str, Any], contact: TargetContact, source_crm: str
) -> dict[str, Any]:
    """``smContactTaskReq`` for an activity: note = subject, details and result; date = start."""
    if contact.email is None:
        raise Unmappable("its contact has no email address for the task's contactEmail")
    when = activity.get("start_time") or activity.get("end_time")
    if when is None:
        raise Unmappable("no start time: a SALESmanago task needs a date")
    result = _text(activity.get("result"))
    parts = [
        _text(activity.get("subject")),
        _text(activity.get("details")),
        f"Result: {result}" if result else None,
    ]
    timeless = _properties(activity.get("properties")).get("timeless") == "true"
    task: dict[str, Any] = {
        "contactEmail": contact.email,
        "id": task_id(source_crm, str(activity["source_id"])),
        "date": epoch_ms(when),
        "reminder": REMINDER_TIMELESS if timeless else REMINDER_TIMED,
    }
    note = "\n\n".join(p for p in parts if p)
    if note:
        task["note"] = clip(note, SM_TASK_NOTE_LIMIT)
    return task


def salesnexus_activity(task: Mapping[str, Any], contact: TargetContact) -> dict[str, str]:
    """``create-activity`` parameters for a SALESmanago task (a to-do at the task's time)."""
    when = task.get("start_time")
    if when is None:
        raise Unmappable("no date: a SalesNexus activity needs a start time")
    note = _text(task.get("details")) or ""
    first_line = next((line.strip() for line in note.splitlines() if line.strip()), "")
    return {
        "schedule-with": contact.id,
        "regarding": clip(first_line, SN_TEXT_LIMIT),
        "details": note,
        "start-time": iso_utc(when),
        "end-time": iso_utc(task.get("end_time") or when),
        "type": "todo",
        "timeless": "false",
    }


def salesnexus_note(note: Mapping[str, Any], contact: TargetContact) -> dict[str, str]:
    """``create-note`` parameters for a SALESmanago note."""
    return {
        "contact-id": contact.id,
        "details": _text(note.get("details")) or "",
        "type": SN_NOTE_TYPE,
    }


def salesmanago_purchase(sale: Mapping[str, Any]) -> dict[str, Any]:
    """A PURCHASE ``contactEvent`` for a sale: detail1 status, detail2 stage, then the sale's
    other fields as ``name: value`` in detail3..detail20."""
    when = sale.get("occurred_at") or sale.get("created_at")
    if when is None:
        raise Unmappable("no close date or creation time: a SALESmanago event needs a date")
    event: dict[str, Any] = {
        "contactExtEventType": "PURCHASE",
        "date": epoch_ms(when),
        "externalId": str(sale["source_id"]),
    }
    description = _text(sale.get("details"))
    if description:
        event["description"] = clip(description, SM_EVENT_DESCRIPTION_LIMIT)
    amount = sale.get("amount")
    if isinstance(amount, float) and math.isfinite(amount):
        event["value"] = round(amount, 2)
    products = _text(sale.get("products"))
    if products:
        event["products"] = clip(products, SM_EVENT_PRODUCTS_LIMIT)
    details = [_text(sale.get("status")), _text(sale.get("stage"))]
    details += [f"{k}: {v}" for k, v in sorted(_properties(sale.get("properties")).items()) if v]
    for number, value in enumerate(details[:SM_DETAIL_COUNT], start=1):
        if value:
            event[f"detail{number}"] = clip(value, SM_DETAIL_LIMIT)
    return event


@dataclass(frozen=True)
class SalesFields:
    """The field ids ``create-sales-opp`` needs, resolved by name from the target's catalog."""

    contact_id: str
    status: str
    details: str | None
    amount: str | None
    close_date: str | None
    stage: str | None
    products: str | None
    external_id: str | None

    @classmethod
    def from_catalog(cls, catalog: FieldCatalog) -> SalesFields:
        def find(name: str) -> str | None:
            try:
                return str(catalog.id_for("sales", name))
            except KeyError:
                return None

        contact_id, status = find("Contact ID"), find("Status")
        if contact_id is None or status is None:
            raise ValueError(
                "the SalesNexus field catalog lacks the sales fields 'Contact ID' and 'Status'"
            )
        return cls(
            contact_id=contact_id,
            status=status,
            details=find("Details"),
            amount=find("Amount"),
            close_date=find("Close Date"),
            stage=find("Sales State"),
            products=find("Products"),
            external_id=find("External ID"),
        )


def salesnexus_sale(
    sale: Mapping[str, Any], contact: TargetContact, fields: SalesFields
) -> dict[str, str]:
    """``sales-field-data`` for a sale (field ids as strings, every value a string)."""
    data = {
        fields.contact_id: contact.id,
        fields.status: SN_STATUS_CODES.get(str(sale.get("status") or "won"), "1"),
    }
    amount = sale.get("amount")
    when = sale.get("occurred_at")
    values = {
        fields.details: _text(sale.get("details")),
        fields.amount: f"{amount:.2f}"
        if isinstance(amount, float) and math.isfinite(amount)
        else None,
        fields.close_date: when.astimezone(UTC).date().isoformat() if when else None,
        fields.stage: _text(sale.get("stage")),
        fields.products: _text(sale.get("products")),
        fields.external_id: _text(sale.get("external_id")),
    }
    data.update({key: value for key, value in values.items() if key and value})
    return data


def plan_activities(
    activities: pa.Table,
    *,
    source_crm: Crm,
    target_crm: Crm,
    contacts: Mapping[str, TargetContact],
    problems: Mapping[str, str],
) -> RecordPlan:
    plan = RecordPlan()
    for record in activities.to_pylist():
        source_id = str(record["source_id"])
        kind = record.get("kind")
        if target_crm == "salesnexus" and kind == "visit":
            reason = "SalesNexus has no counterpart for a SALESmanago visit"
            plan.rejects.append(Reject("activities", source_id, "skipped", reason))
            continue
        try:
            contact = _contact_for(record, contacts, problems)
            if target_crm == "salesmanago":
                target_kind, payload = "task", salesmanago_task(record, contact, source_crm)
            elif kind == "note":
                target_kind, payload = "note", salesnexus_note(record, contact)
            elif kind == "task":
                target_kind, payload = "activity", salesnexus_activity(record, contact)
            else:
                raise Unmappable(f"no SalesNexus counterpart for a {kind!r} activity")
        except Unmappable as exc:
            plan.rejects.append(Reject("activities", source_id, "rejected", str(exc)))
            continue
        plan.writes.append(
            PlannedWrite("activities", source_id, target_kind, payload, contact.id, contact.email)
        )
    return plan


def plan_sales(
    sales: pa.Table,
    *,
    target_crm: Crm,
    contacts: Mapping[str, TargetContact],
    problems: Mapping[str, str],
    fields: SalesFields | None = None,
) -> RecordPlan:
    plan = RecordPlan()
    lost: dict[str, int] = {}
    for record in sales.to_pylist():
        source_id = str(record["source_id"])
        try:
            contact = _contact_for(record, contacts, problems)
            if target_crm == "salesmanago":
                target_kind, payload = "purchase", salesmanago_purchase(record)
            else:
                assert fields is not None, "a SalesNexus target needs its sales fields"
                target_kind, payload = "sale", salesnexus_sale(record, contact, fields)
                for name in _lost_sale_values(record, fields):
                    lost[name] = lost.get(name, 0) + 1
        except Unmappable as exc:
            plan.rejects.append(Reject("sales", source_id, "rejected", str(exc)))
            continue
        plan.writes.append(
            PlannedWrite("sales", source_id, target_kind, payload, contact.id, contact.email)
        )
    if lost:
        listed = ", ".join(f"{name} ({count})" for name, count in sorted(lost.items()))
        plan.warnings.append(
            f"values with no SalesNexus sales field are not migrated (name and number of sales): "
            f"{listed}"
        )
    return plan


def _lost_sale_values(record: Mapping[str, Any], fields: SalesFields) -> list[str]:
    """Names of the sale's values that ``salesnexus_sale`` has no field for."""
    lost = [name for name, value in _properties(record.get("properties")).items() if value]
    for column, name, field_id in (
        ("products", "Products", fields.products),
        ("external_id", "External ID", fields.external_id),
        ("stage", "Sales State", fields.stage),
    ):
        if field_id is None and _text(record.get(column)):
            lost.append(name)
    return lost


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
