"""The SalesNexus sandbox's data: field catalog, contacts, activities, sales and notes.

Everything is seeded from :class:`SandboxConfig` (same seed, same data) and kept in memory. Records
are held the way the API returns them: contacts and sales map field ids (as strings) to string
values, activities use the named keys of ``create-activity``. Ids are increasing integers, so the
insertion order of each dict is the stable listing order by id.

The upsert rules of ``import-contacts`` / ``update-contact`` live here, apart from HTTP.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etl.sandbox import fake
from etl.sandbox.config import SandboxConfig

MAX_VALUE_LENGTH = 255
ROW_FAILURE_MESSAGE = "Internal error while importing the contact"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# (id, name, table, type) of the default catalog; ``field_id_offset`` shifts every id.
DEFAULT_FIELDS: tuple[tuple[int, str, str, str], ...] = (
    (47, "Company", "contact", "text"),
    (48, "Full Name", "contact", "text"),
    (49, "First Name", "contact", "text"),
    (50, "Last Name", "contact", "text"),
    (51, "Phone", "contact", "phone"),
    (52, "Mobile Phone", "contact", "phone"),
    (53, "Street", "contact", "text"),
    (54, "City", "contact", "text"),
    (55, "State", "contact", "text"),
    (56, "Zip Code", "contact", "text"),
    (57, "Country", "contact", "text"),
    (58, "Birthday", "contact", "date"),
    (59, "Tags", "contact", "text"),
    (60, "Record Manager", "contact", "email"),
    (61, "Created", "contact", "datetime"),
    (62, "Modified", "contact", "datetime"),
    (133, "Email", "contact", "email"),
    (300, "Lead Source", "contact", "pick-list"),
    (301, "Customer Tier", "contact", "pick-list"),
    (302, "Newsletter Opt-In", "contact", "boolean"),
    (303, "Annual Revenue", "contact", "number"),
    (220, "Contact ID", "sales", "number"),
    (222, "Status", "sales", "number"),
    (231, "Details", "sales", "text"),
    (234, "Sales State", "sales", "text"),
    (235, "Amount", "sales", "number"),
    (236, "Close Date", "sales", "date"),
    (237, "Created", "sales", "datetime"),
    (310, "Product Line", "sales", "pick-list"),
    (400, "Details", "note", "text"),
    (401, "Contact ID", "note", "number"),
    (402, "Type", "note", "text"),
    (500, "Regarding", "activity", "text"),
    (501, "Details", "activity", "text"),
)

COUNTRY_NAMES: dict[str, str] = {
    "US": "United States", "GB": "United Kingdom", "IE": "Ireland", "DE": "Deutschland",
    "AT": "Österreich", "CH": "Schweiz", "FR": "France", "ES": "España", "IT": "Italia",
    "PL": "Polska", "CZ": "Česko", "DK": "Danmark", "SE": "Sverige", "FI": "Suomi",
    "IS": "Ísland", "NL": "Nederland", "TR": "Türkiye", "BR": "Brasil", "MX": "México",
    "CA": "Canada", "AU": "Australia", "JP": "日本", "KR": "대한민국", "VN": "Việt Nam",
    "CN": "中国", "IN": "India", "NG": "Nigeria", "KE": "Kenya", "ZA": "South Africa",
}  # fmt: skip
SALES_STATES: tuple[str, ...] = (
    "Prospecting", "Qualification", "Proposal", "Negotiation", "Closed",
)  # fmt: skip
PRODUCT_LINES: tuple[str, ...] = ("Software", "Hardware", "Services", "Training", "Support")
NOTE_TYPES: tuple[str, ...] = ("Call", "Email", "Meeting", "General")
ACTIVITY_TYPES: tuple[str, ...] = ("call", "meeting", "todo")
ACTIVITY_RESULTS: tuple[str, ...] = (
    "Done", "No answer", "Left a voicemail", "Signed 🎉", "Rescheduled", "",
)  # fmt: skip
SANDBOX_USERS: tuple[tuple[str, str], ...] = (
    ("Ewa Kowalska", "ewa.kowalska@sandbox.example"),
    ("Jürgen Weiß", "juergen.weiss@sandbox.example"),
    ("Sofia García", "sofia.garcia@sandbox.example"),
)


_DAY_MS = 86_400_000
_dates: dict[int, str] = {}


def _day(day: int) -> str:
    text = _dates.get(day)
    if text is None:
        text = _dates[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
    return text


def iso_utc(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with seconds, e.g. ``2026-11-23T09:30:00Z``."""
    day, rest = divmod(ms, _DAY_MS)
    seconds = rest // 1000
    return f"{_day(day)}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def iso_date(ms: int) -> str:
    return _day(ms // _DAY_MS)


@dataclass(frozen=True)
class Field:
    id: int
    name: str
    table: str
    type: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "table": self.table, "type": self.type}


class EntryError(ValueError):
    """A per-entry validation failure; its message names the field."""


def _field_label(field: Field) -> str:
    return f"field {field.id} ({field.name})"


class SalesNexusStore:
    """The in-memory database of one sandbox SalesNexus account."""

    def __init__(self, config: SandboxConfig, *, owner_email: str = "demo@sandbox.example") -> None:
        self.config = config
        offset = config.field_id_offset
        self.fields: list[Field] = [Field(i + offset, n, t, ty) for i, n, t, ty in DEFAULT_FIELDS]
        self._by_name = {(f.table, f.name): f for f in self.fields}
        self._by_id: dict[str, dict[str, Field]] = {}
        for f in self.fields:
            self._by_id.setdefault(f.table, {})[str(f.id)] = f
        self.users: list[dict[str, str]] = [
            {"user-id": "1", "name": "Demo User", "email": owner_email},
            *(
                {"user-id": str(n), "name": name, "email": mail}
                for n, (name, mail) in enumerate(SANDBOX_USERS, start=2)
            ),
        ]
        self.contacts: dict[str, dict[str, str]] = {}
        self.activities: dict[str, dict[str, str]] = {}
        self.sales: dict[str, dict[str, str]] = {}
        self.notes: dict[str, dict[str, str]] = {}
        self.deleted: dict[str, dict[str, str]] = {}
        self.campaigns: dict[str, dict[str, Any]] = {
            "1": {"campaign-id": "1", "name": "Welcome series", "contact-ids": []},
            "2": {"campaign-id": "2", "name": "Black Friday 2026", "contact-ids": []},
        }
        self._next = {"contact": 101, "activity": 1001, "sales": 2001, "note": 3001}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._listing_cache: dict[tuple[str, str], list[str]] = {}
        self._seed()

    # -- catalog ---------------------------------------------------------------------------
    def field_id(self, table: str, name: str) -> int:
        return self._by_name[(table, name)].id

    def _fid(self, table: str, name: str) -> str:
        return str(self._by_name[(table, name)].id)

    def field(self, table: str, field_id: str | int) -> Field | None:
        return self._by_id.get(table, {}).get(str(field_id))

    def fields_json(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in self.fields]

    def user(self, user_id: str) -> dict[str, str] | None:
        return next((u for u in self.users if u["user-id"] == user_id), None)

    # -- seeding ---------------------------------------------------------------------------
    def _new_id(self, table: str) -> str:
        value = self._next[table]
        self._next[table] = value + 1
        return str(value)

    def _seed(self) -> None:
        seed = self.config.seed
        self._seed_contacts(random.Random(f"salesnexus-contacts-{seed}"))
        self._seed_activities(random.Random(f"salesnexus-activities-{seed}"))
        self._seed_sales(random.Random(f"salesnexus-sales-{seed}"))
        self._seed_notes(random.Random(f"salesnexus-notes-{seed}"))

    def _seed_contacts(self, rng: random.Random) -> None:
        f = {f.name: str(f.id) for f in self.fields if f.table == "contact"}
        managers = [u["email"] for u in self.users]
        r = rng.random
        for serial in range(1, self.config.contacts + 1):
            first, last = fake.first_name(rng), fake.last_name(rng)
            place = fake.place(rng)
            created = fake.timestamp_ms(rng)
            tags = fake.sample(rng, fake.TAGS, int(r() * 4))
            values = {
                f["Company"]: fake.company(rng) if r() < 0.8 else "",
                f["Full Name"]: f"{first} {last}",
                f["First Name"]: first,
                f["Last Name"]: last,
                f["Phone"]: fake.phone(rng) if r() < 0.85 else "",
                f["Mobile Phone"]: fake.phone(rng) if r() < 0.4 else "",
                f["Street"]: fake.street_address(rng) if r() < 0.75 else "",
                f["City"]: place.city if r() < 0.9 else "",
                f["State"]: place.province or "",
                f["Zip Code"]: place.zip_code,
                f["Country"]: COUNTRY_NAMES.get(place.country, place.country) if r() < 0.9 else "",
                f["Birthday"]: iso_date(fake.timestamp_ms(rng, span_ms=60 * fake.YEAR_MS))
                if r() < 0.5
                else "",
                f["Tags"]: ",".join(tags),
                f["Record Manager"]: managers[int(r() * len(managers))],
                f["Created"]: iso_utc(created),
                f["Modified"]: iso_utc(fake.timestamp_after(rng, created)),
                f["Email"]: fake.email_for(rng, first, last, serial) if r() < 0.93 else "",
                f["Lead Source"]: fake.lead_source(rng) if r() < 0.7 else "",
                f["Customer Tier"]: fake.pick(rng, fake.CUSTOMER_TIERS) if r() < 0.6 else "",
                f["Newsletter Opt-In"]: ("true" if r() < 0.6 else "false") if r() < 0.8 else "",
                f["Annual Revenue"]: _revenue(rng) if r() < 0.5 else "",
            }
            self._apply_oddity(serial, values, f)
            self.contacts[self._new_id("contact")] = values

    @staticmethod
    def _apply_oddity(serial: int, values: dict[str, str], f: Mapping[str, str]) -> None:
        """A few fixed records with values at the edges of what the API allows."""
        if serial == 3:
            values[f["Company"]] = fake.ODD_COMPANY  # exactly 255 characters
        elif serial == 5:
            values[f["Email"]] = fake.ODD_EMAIL  # mixed case, plus-addressing
        elif serial == 7:  # only a name and an email: everything else empty
            for key in values:
                if key not in (f["Full Name"], f["Email"], f["Created"], f["Modified"]):
                    values[key] = ""
        elif serial == 11:
            values[f["Full Name"]] = "  Zoë   O'Brien-Łukasiewicz 😀 "
            values[f["Tags"]] = "VIP,,  LEAD ,VIP"

    def _seed_activities(self, rng: random.Random) -> None:
        contact_ids = list(self.contacts)
        user_ids = [u["user-id"] for u in self.users]
        r = rng.random
        for _ in range(self.config.activities):
            start = fake.timestamp_ms(rng, end_ms=fake.ANCHOR_MS + 60 * fake.DAY_MS)
            timeless = r() < 0.1
            if timeless:
                start -= start % fake.DAY_MS
                end = start
            else:
                start -= start % (15 * 60_000)
                end = start + (15, 30, 60, 90)[int(r() * 4)] * 60_000
            completed = start < fake.ANCHOR_MS and r() < 0.6
            activity_id = self._new_id("activity")
            self.activities[activity_id] = {
                "activity-id": activity_id,
                "schedule-with": contact_ids[int(r() * len(contact_ids))] if contact_ids else "",
                "schedule-for": user_ids[int(r() * len(user_ids))],
                "regarding": fake.pick(rng, fake.TASK_NOTES),
                "details": fake.note(rng),
                "color": f"{int(r() * 0xFFFFFF):06X}",
                "start-time": iso_utc(start),
                "end-time": iso_utc(end),
                "type": fake.pick(rng, ACTIVITY_TYPES),
                "timeless": "true" if timeless else "false",
                "completed": "true" if completed else "false",
                "result": fake.pick(rng, ACTIVITY_RESULTS) if completed else "",
            }

    def _seed_sales(self, rng: random.Random) -> None:
        f = {f.name: str(f.id) for f in self.fields if f.table == "sales"}
        contact_ids = list(self.contacts)
        r = rng.random
        for _ in range(self.config.sales):
            created = fake.timestamp_ms(rng)
            status = r()
            status_code = "0" if status < 0.5 else "1" if status < 0.8 else "2"
            close = fake.timestamp_after(rng, created, end_ms=created + 180 * fake.DAY_MS)
            values = {
                f["Contact ID"]: contact_ids[int(r() * len(contact_ids))] if contact_ids else "",
                f["Status"]: status_code,
                f["Details"]: fake.pick(rng, fake.PRODUCTS) if r() < 0.9 else "",
                f["Sales State"]: "Closed" if status_code != "0" else fake.pick(rng, SALES_STATES),
                f["Amount"]: f"{fake.amount(rng):.2f}" if r() < 0.95 else "",
                f["Close Date"]: iso_date(close) if status_code != "0" or r() < 0.3 else "",
                f["Created"]: iso_utc(created),
                f["Product Line"]: fake.pick(rng, PRODUCT_LINES) if r() < 0.75 else "",
            }
            self.sales[self._new_id("sales")] = values

    def _seed_notes(self, rng: random.Random) -> None:
        contact_ids = list(self.contacts)
        for _ in range(len(contact_ids) // 2):
            contact_id = contact_ids[int(rng.random() * len(contact_ids))]
            details = fake.note(rng) or fake.ODD_NOTE
            self._insert_note(contact_id, details, fake.pick(rng, NOTE_TYPES))

    # -- contacts: Python API for tests and the emulator ------------------------------------
    def contact_by_email(self, email: str) -> tuple[str, dict[str, str]] | None:
        """The first contact (by id) whose Email equals ``email`` case-insensitively."""
        key = email.strip().lower()
        ids = self._index(self._fid("contact", "Email")).get(key) if key else None
        if not ids:
            return None
        contact_id = min(ids, key=int)
        return contact_id, self.contacts[contact_id]

    def add_contact(self, values: Mapping[str | int, str]) -> str:
        """Create a contact from field-id keyed values; missing fields are empty."""
        clean = self._known_contact_values(values)
        stamp = iso_utc(now_ms())
        record = {str(f.id): "" for f in self.fields if f.table == "contact"}
        record[self._fid("contact", "Created")] = stamp
        record[self._fid("contact", "Modified")] = stamp
        record.update(clean)
        contact_id = self._new_id("contact")
        self.contacts[contact_id] = record
        self._reindex(contact_id, None, record)
        self._listing_cache.clear()
        return contact_id

    def modify_contact(self, contact_id: str, values: Mapping[str | int, str]) -> None:
        """Set some fields of a contact; ``Modified`` becomes now unless given."""
        record = self.contacts[contact_id]
        clean = self._known_contact_values(values)
        before = dict(record)
        modified = self._fid("contact", "Modified")
        record.update(clean)
        if modified not in clean:
            stamp = iso_utc(now_ms())
            created = record.get(self._fid("contact", "Created"), "")
            record[modified] = max(stamp, created)
        self._reindex(contact_id, before, record)
        self._listing_cache.clear()

    def delete_contact(self, contact_id: str) -> None:
        record = self.contacts.pop(contact_id)
        self.deleted[contact_id] = record
        self._reindex(contact_id, record, None)
        self._listing_cache.clear()

    def _known_contact_values(self, values: Mapping[str | int, str]) -> dict[str, str]:
        clean: dict[str, str] = {}
        for key, value in values.items():
            if self.field("contact", key) is None:
                raise ValueError(f"unknown contact field id {key}")
            clean[str(key)] = value
        return clean

    # -- match indexes ---------------------------------------------------------------------
    def _normalize(self, field_id: str, value: str) -> str:
        field = self._by_id["contact"].get(field_id)
        return value.strip().lower() if field is not None and field.type == "email" else value

    def _index(self, field_id: str) -> dict[str, set[str]]:
        """value -> contact ids for one field, built on first use and kept up to date."""
        index = self._indexes.get(field_id)
        if index is None:
            index = {}
            for contact_id, record in self.contacts.items():
                key = self._normalize(field_id, record.get(field_id, ""))
                index.setdefault(key, set()).add(contact_id)
            self._indexes[field_id] = index
        return index

    def _reindex(
        self, contact_id: str, before: Mapping[str, str] | None, after: Mapping[str, str] | None
    ) -> None:
        for field_id, index in self._indexes.items():
            if before is not None:
                old = self._normalize(field_id, before.get(field_id, ""))
                index.get(old, set()).discard(contact_id)
            if after is not None:
                new = self._normalize(field_id, after.get(field_id, ""))
                index.setdefault(new, set()).add(contact_id)

    def match_contacts(self, criteria: Mapping[str, str], *, match_nulls: bool) -> list[str]:
        """Ids (ascending) of contacts matching every field of ``criteria``.

        With ``match_nulls`` an empty value (on either side) counts as a match for its field, but
        at least one field must match on a real value; without it an empty value never matches.
        """
        if not criteria:
            return []
        candidates: set[str] | None = None
        real: set[str] = set()
        for field_id, raw in criteria.items():
            index = self._index(field_id)
            value = self._normalize(field_id, raw)
            if value == "":
                if match_nulls:
                    continue
                return []
            equal = index.get(value, set())
            allowed = equal | index.get("", set()) if match_nulls else equal
            candidates = set(allowed) if candidates is None else candidates & allowed
            real |= equal
            if not candidates:
                return []
        if candidates is None:
            return []
        return sorted(candidates & real, key=int)

    # -- upserts -----------------------------------------------------------------------------
    def validate_contact_values(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Check field-id keyed values; raises :class:`EntryError` naming the bad field."""
        clean: dict[str, str] = {}
        for key, value in values.items():
            field = self.field("contact", key)
            if field is None:
                raise EntryError(f"Unknown field id {key}")
            label = _field_label(field)
            if not isinstance(value, str):
                raise EntryError(f"The value of {label} must be a string")
            if len(value) > MAX_VALUE_LENGTH:
                raise EntryError(
                    f"The value of {label} is longer than {MAX_VALUE_LENGTH} characters"
                )
            if field.type == "email" and value and not EMAIL_RE.match(value.strip()):
                raise EntryError(f"The value of {label} is not a valid email address")
            clean[str(field.id)] = value
        return clean

    def _match_fields(self, to_match: Any) -> list[str]:
        if not isinstance(to_match, list):
            raise EntryError("_toMatch must be a list of field ids")
        ids: list[str] = []
        for item in to_match:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise EntryError(f"_toMatch holds {item!r}, which is not a field id")
            if self.field("contact", item) is None:
                raise EntryError(f"Unknown field id {item} in _toMatch")
            ids.append(str(item))
        return ids

    def upsert(
        self,
        values: Mapping[str, str],
        match_by: Mapping[str, str] | None,
        *,
        create_if_not_updated: bool,
        match_nulls: bool,
        manager: str,
    ) -> tuple[str, list[str]]:
        """Update every contact matching ``match_by`` with ``values``, or create one.

        Returns the status (created, updated or skipped) and the contact ids concerned.
        """
        if match_by:
            matches = self.match_contacts(match_by, match_nulls=match_nulls)
            if matches:
                for contact_id in matches:
                    self.modify_contact(contact_id, values)
                return "updated", matches
        if not create_if_not_updated:
            return "skipped", []
        record = dict(values)
        manager_id = self._fid("contact", "Record Manager")
        if not record.get(manager_id):
            record[manager_id] = manager
        return "created", [self.add_contact(record)]

    def import_contacts(
        self,
        entries: Iterable[Any],
        *,
        create_if_not_updated: bool,
        match_nulls: bool,
        manager: str,
        row_fails: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Apply ``import-contacts`` entries in order; one result per entry."""
        results: list[dict[str, Any]] = []
        for index, entry in enumerate(entries):
            try:
                if not isinstance(entry, dict):
                    raise EntryError("The entry is not a JSON object")
                match_ids = self._match_fields(entry.get("_toMatch") or [])
                values = self.validate_contact_values(
                    {k: v for k, v in entry.items() if k != "_toMatch"}
                )
            except EntryError as exc:
                results.append(_import_result(index, "error", None, str(exc)))
                continue
            if row_fails is not None and row_fails():
                results.append(_import_result(index, "error", None, ROW_FAILURE_MESSAGE))
                continue
            match_by = {fid: values.get(fid, "") for fid in match_ids}
            status, ids = self.upsert(
                values,
                match_by,
                create_if_not_updated=create_if_not_updated,
                match_nulls=match_nulls,
                manager=manager,
            )
            if status == "skipped":
                message = "No contact matched" if match_ids else "Nothing to match on"
                results.append(_import_result(index, status, None, message))
            else:
                message = f"Updated {len(ids)} contacts" if len(ids) > 1 else ""
                results.append(_import_result(index, status, ids[0], message))
        return results

    # -- listings ----------------------------------------------------------------------------
    def _contact_haystack(self, contact_id: str) -> str:
        record = self.contacts.get(contact_id)
        if record is None:
            return ""
        return "\n".join(
            record.get(self._fid("contact", name), "")
            for name in ("Full Name", "First Name", "Last Name", "Company", "Email")
        ).lower()

    def listing(self, table: str, filter_value: str) -> list[str]:
        """Ids of one table matching ``filter_value`` (substring, case-insensitive), by id."""
        key = (table, filter_value.lower())
        cached = self._listing_cache.get(key)
        if cached is not None:
            return cached
        needle = filter_value.lower()
        ids: list[str]
        if not needle:
            ids = list(
                {"contacts": self.contacts, "activities": self.activities}.get(table, self.sales)
            )
        elif table == "contacts":
            ids = [cid for cid in self.contacts if needle in self._contact_haystack(cid)]
        elif table == "activities":
            ids = [
                aid
                for aid, act in self.activities.items()
                if needle in act["regarding"].lower()
                or needle in self._contact_haystack(act["schedule-with"])
            ]
        else:
            contact_key = self._fid("sales", "Contact ID")
            details_key = self._fid("sales", "Details")
            ids = [
                sid
                for sid, sale in self.sales.items()
                if needle in sale.get(details_key, "").lower()
                or needle in self._contact_haystack(sale.get(contact_key, ""))
            ]
        self._listing_cache[key] = ids
        return ids

    def ordered_ids(self) -> list[str]:
        """Contact ids in listing order (as ``get-contacts`` pages them without a filter)."""
        return self.listing("contacts", "")

    def sales_for_contact(self, contact_id: str) -> list[str]:
        key = self._fid("sales", "Contact ID")
        return [sid for sid, sale in self.sales.items() if sale.get(key) == contact_id]

    def notes_for_contact(self, contact_id: str) -> list[str]:
        key = self._fid("note", "Contact ID")
        return [nid for nid, n in self.notes.items() if n.get(key) == contact_id]

    # -- other writes ------------------------------------------------------------------------
    def _insert_note(self, contact_id: str, details: str, note_type: str) -> str:
        note_id = self._new_id("note")
        self.notes[note_id] = {
            self._fid("note", "Details"): details,
            self._fid("note", "Contact ID"): contact_id,
            self._fid("note", "Type"): note_type,
        }
        return note_id

    def add_note(self, contact_id: str, details: str, note_type: str = "General") -> str:
        return self._insert_note(contact_id, details, note_type)

    def add_activity(self, values: Mapping[str, str]) -> str:
        activity_id = self._new_id("activity")
        record = {
            "activity-id": activity_id,
            "schedule-with": "",
            "schedule-for": "1",
            "regarding": "",
            "details": "",
            "color": "",
            "start-time": "",
            "end-time": "",
            "type": "todo",
            "timeless": "false",
            "completed": "false",
            "result": "",
        }
        record.update(values)
        record["activity-id"] = activity_id
        self.activities[activity_id] = record
        self._listing_cache.clear()
        return activity_id

    def update_activity(self, activity_id: str, values: Mapping[str, str]) -> None:
        self.activities[activity_id].update(values)
        self.activities[activity_id]["activity-id"] = activity_id
        self._listing_cache.clear()

    def add_sale(self, values: Mapping[str, str]) -> str:
        record = {str(f.id): "" for f in self.fields if f.table == "sales"}
        record[self._fid("sales", "Created")] = iso_utc(now_ms())
        record.update(values)
        sales_id = self._new_id("sales")
        self.sales[sales_id] = record
        self._listing_cache.clear()
        return sales_id


def _import_result(index: int, status: str, contact_id: str | None, message: str) -> dict[str, Any]:
    return {"index": index, "status": status, "contact-id": contact_id, "message": message}


def _revenue(rng: random.Random) -> str:
    value = round(10_000 * 10 ** (rng.random() * 3), -2)
    return f"{value:.2f}" if rng.random() < 0.3 else str(int(value))
