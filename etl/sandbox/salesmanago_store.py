"""The SALESmanago sandbox's data: deterministic seeding, lookups, ordering and upsert rules.

Contacts are kept exactly in the contract's contact shape, so the emulator serves them as stored.
Empty nested lists are a shared empty tuple (serialised as ``[]``) to keep a million contacts in
memory; every mutation below replaces a list rather than appending to it in place.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from functools import lru_cache
from typing import Any

from etl.sandbox import fake
from etl.sandbox.config import SandboxConfig

TEXT_LIMIT = 255
EMPTY: tuple[()] = ()
EXT_EVENT_TYPES = frozenset({"PURCHASE", "CART", "VISIT", "PHONE_CALL", "OTHER"})
STATES = ("PROSPECT", "CUSTOMER", "PARTNER", "OTHER", "UNKNOWN")
CONTACT_TEXT_FIELDS = ("name", "phone", "fax", "company", "state", "externalId")
ADDRESS_FIELDS = ("streetAddress", "zipCode", "city", "country")
LIST_FIELDS = (
    "contactTags",
    "properties",
    "contactExtEvents",
    "contactTasks",
    "contactNotes",
    "contactVisits",
)
CONTACT_KEYS = (
    "id", "name", "email", "phone", "fax", "score", "state", "optedOut", "optedOutPhone",
    "deleted", "invalid", "company", "externalId", "address", "birthdayYear", "birthdayMonth",
    "birthdayDay", "province", "mainContactOwner", "modifiedOn", "createdOn", *LIST_FIELDS,
)  # fmt: skip
DETAIL_KEYS = tuple(f"detail{i}" for i in range(1, 21))
_EVENT_TEMPLATE: dict[str, Any] = dict.fromkeys(
    (
        "eventId", "date", "description", "products", "location", "value",
        "contactExtEventType", *DETAIL_KEYS, "externalId",
    )
)  # fmt: skip
ANCHOR_START = fake.ANCHOR_MS - fake.THREE_YEARS_MS
_BLANK_CONTACT: dict[str, Any] = {
    **dict.fromkeys(CONTACT_KEYS),
    "score": 0,
    "state": "PROSPECT",
    "optedOut": False,
    "optedOutPhone": False,
    "deleted": False,
    "invalid": False,
    **dict.fromkeys(LIST_FIELDS, EMPTY),
}
_BLANK_ADDRESS: dict[str, Any] = dict.fromkeys(ADDRESS_FIELDS)
_NO_ADDRESS: dict[str, Any] = {}
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_EMAIL_MATCH = _EMAIL_RE.match
_blake2s = hashlib.blake2s
# The keys of an upsert entry (and of its ``contact``) that validate_entry's fast path takes.
_FAST_ENTRY_KEYS = frozenset({"contact", "province", "birthday", "tags", "properties"})
_FAST_CONTACT_KEYS = frozenset({"email", "address", *CONTACT_TEXT_FIELDS})
# From this many contacts on, a write's objects are frozen out of the cyclic GC (paused_gc).
FREEZE_FROM_CONTACTS = 20_000
# uuid4's variant bits over the first hex digit of the clock sequence: 10xx.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


class LimitError(ValueError):
    """A value over one of the API's length limits (answered HTTP 400, not a row error)."""


_last_now = 0


@contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """The cyclic garbage collector off for a while (re-enabled if it was on).

    Upserting 1000 rows creates thousands of long-lived dicts and lists (no cycles), and each of
    the collector's automatic passes over a large store walks every contact: without the pause,
    collection took a third of the sandbox's CPU on a bulk import.

    ``freeze=True`` (for a large store) then collects what is not frozen yet (only what was
    allocated since the last freeze, so it is cheap) and moves every survivor into the
    permanent generation (``gc.freeze``): the full collections that followed each write stop
    rescanning a store that only grows (a fifth of the sandbox's CPU on a 100k-row import).
    The price: an object alive at a freeze that later dies in a reference cycle is never
    collected (a few objects of a connection, against a store of millions)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if freeze:
                gc.collect()
                gc.freeze()
            gc.enable()


def now_ms() -> int:
    """Wall-clock epoch ms, never going backwards within the process."""
    global _last_now
    _last_now = max(_last_now, time.time_ns() // 1_000_000)
    return _last_now


def check_length(field: str, value: Any, limit: int = TEXT_LIMIT) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise LimitError(f"field '{field}' is {len(value)} characters, the limit is {limit}")


def check_email(value: Any, field: str = "email") -> str:
    if value is None or value == "":
        raise ValueError(f"field '{field}' is missing")
    if not isinstance(value, str):
        raise ValueError(f"field '{field}' must be a string, got {type(value).__name__}")
    check_length(field, value)
    if not _EMAIL_RE.match(value):
        raise ValueError(f"field '{field}' is not a valid e-mail address: {value!r}")
    return value


def _text(field: str, value: Any) -> str:
    """A contact text field as stored: a string within the length limit, else LimitError."""
    if type(value) is str:
        if len(value) > TEXT_LIMIT:
            check_length(field, value)
        return value
    check_length(field, value)  # a str subclass
    return str(value)


def _uuid4_text(digest: bytes) -> str:
    """``str(uuid.UUID(bytes=digest[:16], version=4))`` without the UUID object: the version
    nibble becomes ``4``, the variant bits ``10``."""
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def parse_birthday(value: Any) -> tuple[int | None, int, int]:
    """``yyyyMMdd`` or ``MMdd`` to (year or None, month, day); ValueError naming the field."""
    if type(value) is str:
        return _parse_birthday_text(value)
    return _parse_birthday(value)


@lru_cache(maxsize=1 << 16)  # a bulk upsert repeats the same few thousand birthdays
def _parse_birthday_text(value: str) -> tuple[int | None, int, int]:
    return _parse_birthday(value)


def _parse_birthday(value: Any) -> tuple[int | None, int, int]:
    text = value if isinstance(value, str) else None
    if text is None or not text.isdigit() or len(text) not in (4, 8):
        raise ValueError(f"field 'birthday' must be yyyyMMdd or MMdd, got {value!r}")
    year = int(text[:4]) if len(text) == 8 else None
    month, day = int(text[-4:-2]), int(text[-2:])
    try:
        date(year or 2000, month, day)  # 2000 is a leap year, so 0229 passes without a year
    except ValueError:
        raise ValueError(f"field 'birthday' is not a valid date: {value!r}") from None
    if year is not None and year < 1900:
        raise ValueError(f"field 'birthday' has an implausible year: {value!r}")
    return year, month, day


def tag_record(tag: str, score: int, created_on: int) -> dict[str, Any]:
    return {
        "tag": tag,
        "tagName": tag,
        "score": score,
        "createdOn": created_on,
        "tagWithScore": f"{tag} ({score})",
    }


def _creation_times(rng: random.Random, n: int) -> list[int]:
    """``n`` strictly increasing epoch-ms stamps spread over the three seeded years."""
    r = rng.random
    stamps = sorted([ANCHOR_START + int(r() * fake.THREE_YEARS_MS) for _ in range(n)])
    for index in range(1, n):
        if stamps[index] <= stamps[index - 1]:
            stamps[index] = stamps[index - 1] + 1
    return stamps


def _targets(rng: random.Random, n: int, count: int) -> list[int]:
    """``count`` random contact indexes, sorted so seeding walks memory in order."""
    r = rng.random
    return sorted([int(r() * n) for _ in range(count)])


class _Pools:
    """Value pools drawn once per seed, so seeding a contact indexes lists instead of formatting."""

    def __init__(self, rng: random.Random) -> None:
        self.first_names = fake.FIRST_NAMES
        self.last_names = fake.LAST_NAMES
        self.places = fake.PLACES
        self.companies = fake.COMPANIES
        self.lead_sources = fake.LEAD_SOURCES
        self.streets = [fake.street_address(rng) for _ in range(4096)]
        self.phones = [fake.phone(rng) for _ in range(16384)]
        self.n_first, self.n_last = len(self.first_names), len(self.last_names)
        self.full_names = [f"{f} {la}" for f in self.first_names for la in self.last_names]
        # Four local-part forms per person; the serial appended after them keeps each unique.
        self.email_prefixes = [
            prefix
            for f in self.first_names
            for la in self.last_names
            for prefix in _email_prefixes(fake.FIRST_SLUGS[f], fake.LAST_SLUGS[la])
        ]
        self.domains = [f"@{d}" for d in fake.EMAIL_DOMAINS]
        self.n_domains = len(self.domains)
        self.n_places, self.n_companies = len(self.places), len(self.companies)
        self.n_lead_sources = len(self.lead_sources)
        self.n_streets, self.n_phones = len(self.streets), len(self.phones)


def _email_prefixes(first: str, last: str) -> tuple[str, str, str, str]:
    return f"{first}.{last}.", f"{first[0]}{last}", f"{first}_", f"{last}.{first}"


class SalesManagoStore:
    """All contacts of one sandbox account, seeded from ``config`` (same seed, same data)."""

    def __init__(self, config: SandboxConfig, owner: str = "owner@sandbox.example") -> None:
        self.config = config
        self.owner = owner
        self.contacts: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, int] = {}
        self._by_email: dict[str, str] = {}
        self._order: list[tuple[int, str]] = []  # (createdOn, id); read it through _ordered()
        # (createdOn, index): every key before ``index`` in _order was created earlier (a hint
        # for inserting a batch's contacts, which share one createdOn; None when unknown).
        self._run: tuple[int, int] | None = None
        self._unsorted = False  # the run's keys were appended unsorted (see _ordered)
        self._event_owner: dict[str, str] = {}  # eventId -> contact id
        self._task_owner: dict[str, str] = {}  # task id -> contact id
        self._rng = random.Random(f"salesmanago-runtime-{config.seed}")
        self._creations: Counter[str] = Counter()  # e-mail -> contacts created with it so far
        self._seed()

    # -- seeding ------------------------------------------------------------------------------
    def _seed(self) -> None:
        # Seeding allocates millions of objects and frees none: the cyclic GC would only rescan.
        large = self.config.contacts >= FREEZE_FROM_CONTACTS
        with paused_gc(freeze=large and self.config.owns_process):
            rng = random.Random(f"salesmanago-{self.config.seed}")
            pools = _Pools(rng)
            contacts = self._seed_contacts(rng, pools, self.config.contacts)
            if len(self._by_email) != len(contacts):  # the e-mail forms make this impossible
                raise AssertionError("seeded e-mail addresses are not unique")
            # Creation times strictly increase with the index, so this is already sorted.
            self._order = [(c["createdOn"], c["id"]) for c in contacts]
            if contacts:
                self._seed_activities(rng, contacts)
                self._seed_events(rng, contacts)

    def _seed_contacts(self, rng: random.Random, pools: _Pools, n: int) -> list[dict[str, Any]]:
        """``n`` contacts in creation order; one loop with every pool bound to a local (hot)."""
        r = rng.random
        uuid = fake.seeded_uuid
        sample = fake.sample
        anchor = fake.ANCHOR_MS
        owner = self.owner
        n_first, n_last = pools.n_first, pools.n_last
        first_names, full_names = pools.first_names, pools.full_names
        prefixes, domains, n_domains = pools.email_prefixes, pools.domains, pools.n_domains
        places, n_places = pools.places, pools.n_places
        streets, n_streets = pools.streets, pools.n_streets
        phones, n_phones = pools.phones, pools.n_phones
        companies, n_companies = pools.companies, pools.n_companies
        sources, n_sources = pools.lead_sources, pools.n_lead_sources
        tags_pool, tiers = fake.TAGS, fake.LOYALTY_TIERS
        by_id, by_email = self.contacts, self._by_email
        contacts: list[dict[str, Any]] = []
        for i, created in enumerate(_creation_times(rng, n)):
            first_index = int(r() * n_first)
            person = first_index * n_last + int(r() * n_last)
            email = f"{prefixes[person * 4 + int(r() * 4)]}{i + 1}{domains[int(r() * n_domains)]}"
            place = places[int(r() * n_places)]
            roll = r()
            year = month = day = None
            if roll < 0.45:
                year = 1950 + int(r() * 55) if roll < 0.3 else None
                month, day = 1 + int(r() * 12), 1 + int(r() * 28)
            roll = r()
            company = companies[int(r() * n_companies)] if roll < 0.7 else None
            if roll >= 0.9:
                company = ""
            roll = r()
            phone = phones[int(r() * n_phones)] if roll < 0.8 else None
            if roll >= 0.95:
                phone = ""
            roll = r()
            contact: dict[str, Any] = {
                "id": uuid(rng),
                "name": full_names[person] if roll < 0.97 else first_names[first_index],
                "email": email,
                "phone": phone,
                "fax": phones[int(r() * n_phones)] if r() < 0.1 else None,
                "score": int(r() * 2000),
                "state": STATES[int(r() * 5)],
                "optedOut": r() < 0.1,
                "optedOutPhone": r() < 0.05,
                "deleted": False,
                "invalid": roll < 0.01,
                "company": company,
                "externalId": f"EXT-{i + 1:07d}" if r() < 0.3 else None,
                "address": {
                    "streetAddress": streets[int(r() * n_streets)] if r() < 0.8 else None,
                    "zipCode": place.zip_code if r() < 0.85 else None,
                    "city": place.city if r() < 0.9 else None,
                    "country": place.country if r() < 0.95 else None,
                },
                "birthdayYear": year,
                "birthdayMonth": month,
                "birthdayDay": day,
                "province": place.province if roll < 0.7 else None,
                "mainContactOwner": owner,
                "modifiedOn": created + int(r() * (anchor - created)) if r() < 0.6 else created,
                "createdOn": created,
                "contactTags": EMPTY,
                "properties": EMPTY,
                "contactExtEvents": EMPTY,
                "contactTasks": EMPTY,
                "contactNotes": EMPTY,
                "contactVisits": EMPTY,
            }
            roll = r()
            if roll < 0.6:
                stamp = created + int(r() * (anchor - created))
                contact["contactTags"] = [
                    tag_record(t, 1 + int(r() * 20), stamp)
                    for t in sample(rng, tags_pool, 1 + int(roll * 5))
                ]
            roll = r()
            if roll < 0.45:
                props = [{"name": "custom.loyalty_tier", "value": tiers[int(r() * 4)]}]
                if roll < 0.22:
                    source = sources[int(r() * n_sources)]
                    props.append({"name": "custom.lead_source", "value": source})
                if 0.15 < roll < 0.3:
                    newsletter = "true" if r() < 0.7 else ""
                    props.append({"name": "custom.newsletter", "value": newsletter})
                contact["properties"] = props
            if i < 4:
                self._seed_odd_values(contact, i)
            contacts.append(contact)
            by_id[contact["id"]] = contact
            by_email[contact["email"].lower()] = contact["id"]
        return contacts

    @staticmethod
    def _seed_odd_values(contact: dict[str, Any], i: int) -> None:
        """A few deterministic edge cases at the front of the data set."""
        if i == 0:
            contact["company"] = fake.ODD_COMPANY
        elif i == 1:
            contact["email"] = fake.ODD_EMAIL
        elif i == 2:
            contact.update(name="", phone="", fax="", company="", externalId="", province=None)
            contact["address"] = dict.fromkeys(ADDRESS_FIELDS)
        elif i == 3:
            contact["name"] = "Siobhán O'Brien"
            contact["company"] = "O'Reilly Hardware"

    def _seed_activities(self, rng: random.Random, contacts: list[dict[str, Any]]) -> None:
        r = rng.random
        n = len(contacts)
        uuid = fake.seeded_uuid
        anchor = fake.ANCHOR_MS
        task_notes, notes, hosts = fake.TASK_NOTES, fake.NOTES, fake.HOSTS
        sources, keywords, paths = fake.VISIT_SOURCES, fake.SEARCH_KEYWORDS, fake.URL_PATHS
        task_owner = self._task_owner
        odd_note_done = False
        for target in _targets(rng, n, self.config.activities):
            contact = contacts[target]
            created = contact["createdOn"]
            when = created + int(r() * (anchor - created))
            kind = r()
            if kind < 0.3:
                when += int(r() * 30 * fake.DAY_MS)  # some tasks are due in the future
                task = {
                    "id": uuid(rng),
                    "note": task_notes[int(r() * len(task_notes))],
                    "date": when,
                    "cc": contact["email"] if kind < 0.06 else "",
                    "reminder": when - 30 * 60_000 if r() < 0.7 else None,
                }
                items = contact["contactTasks"]
                if items is EMPTY:
                    contact["contactTasks"] = [task]
                else:
                    items.append(task)
                task_owner[task["id"]] = contact["id"]
            elif kind < 0.65:
                text = notes[int(r() * len(notes))]
                if not odd_note_done:
                    text, odd_note_done = fake.ODD_NOTE, True
                note = {"note": text, "date": when, "priv": kind < 0.37}
                items = contact["contactNotes"]
                if items is EMPTY:
                    contact["contactNotes"] = [note]
                else:
                    items.append(note)
            else:
                keyword = keywords[int(r() * len(keywords))]
                visit = {
                    "conversationIntId": int(r() * 10_000_000) if kind > 0.93 else None,
                    "host": hosts[int(r() * len(hosts))],
                    "time": when,
                    "duration": int(r() * 600_000) if kind < 0.9 else None,
                    "visitSource": sources[int(r() * len(sources))],
                    "visitSourceHost": "www.google.com" if keyword else None,
                    "visitSourceKeywords": keyword or None,
                    "visitScore": int(r() * 10),
                    "url": paths[int(r() * len(paths))],
                    "location": None,
                }
                items = contact["contactVisits"]
                if items is EMPTY:
                    contact["contactVisits"] = [visit]
                else:
                    items.append(visit)

    def _seed_events(self, rng: random.Random, contacts: list[dict[str, Any]]) -> None:
        r = rng.random
        n = len(contacts)
        uuid = fake.seeded_uuid
        anchor = fake.ANCHOR_MS
        products, descriptions, places = fake.PRODUCTS, fake.EVENT_DESCRIPTIONS, fake.PLACES
        currencies = ("EUR", "PLN", "USD", "GBP")
        event_owner = self._event_owner
        sales = self.config.sales
        # Purchases are the sales table (exactly ``sales`` of them); carts and visits are extra.
        purchases = [(target, True) for target in _targets(rng, n, sales)]
        others = [(target, False) for target in _targets(rng, n, sales // 4)]
        for k, (target, purchase) in enumerate(purchases + others):
            contact = contacts[target]
            created = contact["createdOn"]
            roll = r()
            kind = "PURCHASE" if purchase else ("CART" if roll < 0.6 else "VISIT")
            event = _EVENT_TEMPLATE.copy()
            event["eventId"] = uuid(rng)
            event["date"] = created + int(r() * (anchor - created))
            event["description"] = descriptions[int(r() * len(descriptions))]
            event["products"] = ", ".join(fake.sample(rng, products, 1 + int(roll * 3)))
            if roll < 0.3:
                event["location"] = places[int(r() * len(places))].city
            event["contactExtEventType"] = kind
            if kind != "VISIT":
                event["value"] = fake.amount(rng)
            if kind == "PURCHASE":
                event["detail1"] = "card" if roll < 0.6 else "transfer"
                event["detail2"] = currencies[int(r() * 4)]
                event["externalId"] = f"ORD-{k + 1:08d}"
            items = contact["contactExtEvents"]
            if items is EMPTY:
                contact["contactExtEvents"] = [event]
            else:
                items.append(event)
            event_owner[event["eventId"]] = contact["id"]

    # -- lookups ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.contacts)

    def get(self, contact_id: str) -> dict[str, Any] | None:
        return self.contacts.get(contact_id)

    def get_by_email(self, email: str) -> dict[str, Any] | None:
        contact_id = self._by_email.get(email.lower()) if isinstance(email, str) else None
        return self.contacts.get(contact_id) if contact_id else None

    def id_for_email(self, email: str) -> str | None:
        return self._by_email.get(email.lower()) if isinstance(email, str) else None

    def ordered_ids(self) -> list[str]:
        """Every live contact id, ordered by ``createdOn`` then ``id``."""
        return [contact_id for _, contact_id in self._ordered()]

    def page(self, page: int, size: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of the stable order, and whether more contacts follow it."""
        start, order = page * size, self._ordered()
        keys = order[start : start + size]
        return [self.contacts[cid] for _, cid in keys], start + size < len(order)

    def created_between(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        order = self._ordered()
        lo = bisect.bisect_left(order, (start, ""))
        for created, contact_id in order[lo:]:
            if created >= end:
                break
            yield self.contacts[contact_id]

    def modified_between(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        contacts = self.contacts
        for _, contact_id in self._ordered():
            contact = contacts[contact_id]
            if start <= contact["modifiedOn"] < end:
                yield contact

    def purchase_count(self) -> int:
        return sum(
            1
            for c in self.contacts.values()
            for e in c["contactExtEvents"]
            if e["contactExtEventType"] == "PURCHASE"
        )

    def activity_count(self) -> int:
        return sum(
            len(c["contactTasks"]) + len(c["contactNotes"]) + len(c["contactVisits"])
            for c in self.contacts.values()
        )

    # -- direct mutation (tests) --------------------------------------------------------------
    def add_contact(self, **fields: Any) -> str:
        """Store a contact given in the contract's shape (missing keys get defaults)."""
        unknown = set(fields) - set(CONTACT_KEYS)
        if unknown:
            raise ValueError(f"unknown contact fields: {sorted(unknown)}")
        email = check_email(fields.get("email"))
        if self.id_for_email(email):
            raise ValueError(f"a contact with the email {email!r} already exists")
        stamp = now_ms()
        contact = self._blank_contact(fields.get("id") or self._new_id(), email, stamp)
        for key, value in fields.items():
            contact[key] = (list(value) or EMPTY) if key in LIST_FIELDS else value
        if contact["id"] in self.contacts:
            raise ValueError(f"a contact with the id {contact['id']!r} already exists")
        self._insert(contact)
        return contact["id"]

    def modify(self, contact_id: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a contact; ``modifiedOn`` becomes now unless given."""
        contact = self.contacts[contact_id]
        bad = (set(changes) - set(CONTACT_KEYS)) | ({"id"} & set(changes))
        if bad:
            raise ValueError(f"cannot change contact fields: {sorted(bad)}")
        if "email" in changes:
            email = check_email(changes["email"])
            other = self.id_for_email(email)
            if other and other != contact_id:
                raise ValueError(f"a contact with the email {email!r} already exists")
            del self._by_email[contact["email"].lower()]
            self._by_email[email.lower()] = contact_id
        if "createdOn" in changes and changes["createdOn"] != contact["createdOn"]:
            self._unorder(contact)
            contact["createdOn"] = changes["createdOn"]
            bisect.insort(self._order, (contact["createdOn"], contact_id))
        for event in contact["contactExtEvents"] if "contactExtEvents" in changes else ():
            self._event_owner.pop(event["eventId"], None)
        for task in contact["contactTasks"] if "contactTasks" in changes else ():
            self._task_owner.pop(task["id"], None)
        for key, value in changes.items():
            contact[key] = (list(value) or EMPTY) if key in LIST_FIELDS else value
        for event in contact["contactExtEvents"] if "contactExtEvents" in changes else ():
            self._event_owner[event["eventId"]] = contact_id
        for task in contact["contactTasks"] if "contactTasks" in changes else ():
            self._task_owner[task["id"]] = contact_id
        if "modifiedOn" not in changes:
            contact["modifiedOn"] = now_ms()
        return contact

    def delete(self, contact_id: str) -> bool:
        """Remove a contact from every listing; remember when in :attr:`deleted`."""
        contact = self.contacts.pop(contact_id, None)
        if contact is None:
            return False
        self._unorder(contact)
        self._by_email.pop(contact["email"].lower(), None)
        for event in contact["contactExtEvents"]:
            self._event_owner.pop(event["eventId"], None)
        for task in contact["contactTasks"]:
            self._task_owner.pop(task["id"], None)
        self.deleted[contact_id] = now_ms()
        return True

    def _insert(self, contact: dict[str, Any], email_key: str | None = None) -> None:
        """Index a contact; ``email_key`` is its lower-case e-mail when the caller has it."""
        contact_id = contact["id"]
        self.contacts[contact_id] = contact
        self._by_email[email_key or contact["email"].lower()] = contact_id
        created = contact["createdOn"]
        key, run = (created, contact_id), self._run
        if run is not None and run[0] == created:  # within this batch's run: sorted when read
            self._order.append(key)
            self._unsorted = True
        else:
            order = self._ordered()
            if not order or order[-1] < key:  # the usual case: created now, after everything
                if not order or order[-1][0] != created:
                    self._run = (created, len(order))
                order.append(key)
            else:
                bisect.insort(order, key)
        if events := contact["contactExtEvents"]:
            for event in events:
                self._event_owner[event["eventId"]] = contact_id
        if tasks := contact["contactTasks"]:
            for task in tasks:
                self._task_owner[task["id"]] = contact_id

    def _unorder(self, contact: dict[str, Any]) -> None:
        order = self._ordered()
        self._run = None  # the indexes after the removed key move
        key = (contact["createdOn"], contact["id"])
        index = bisect.bisect_left(order, key)
        if index < len(order) and order[index] == key:
            del order[index]

    def _ordered(self) -> list[tuple[int, str]]:
        """``_order``, sorted: a batch's contacts (one ``createdOn``, the run) are appended as
        they come and their tail sorted once here, when the order is next needed."""
        if self._unsorted:
            self._unsorted = False
            start = self._run[1] if self._run is not None else 0
            self._order[start:] = sorted(self._order[start:])
        return self._order

    def _new_id(self) -> str:
        return fake.seeded_uuid(self._rng)

    def _new_contact_id(self, key: str) -> str:
        """The id of a contact created through the API: a function of the seed, the e-mail
        (``key``, lower case) and how many contacts were created with it before, not of the
        order requests arrive in, so concurrent writers (and a resumed import) get the same ids
        run after run."""
        nth = self._creations.get(key, 0)  # not Counter's __missing__: a Python call per miss
        self._creations[key] = nth + 1
        text = f"salesmanago-contact-{self.config.seed}-{nth}-{key}"
        # BLAKE2s: a third of sha256's cost on a text this short (the id needs no more).
        return _uuid4_text(_blake2s(text.encode(), digest_size=16).digest())

    def _blank_contact(self, contact_id: str, email: str, stamp: int) -> dict[str, Any]:
        contact = _BLANK_CONTACT.copy()  # keeps CONTACT_KEYS' order
        contact["id"] = contact_id
        contact["email"] = email
        contact["address"] = _BLANK_ADDRESS.copy()
        contact["mainContactOwner"] = self.owner
        contact["modifiedOn"] = contact["createdOn"] = stamp
        return contact

    # -- the API's upsert rules ---------------------------------------------------------------
    def upsert(self, entry: dict[str, Any], owner: str | None = None) -> tuple[str, bool]:
        """Apply one upsert entry (``{contact: {...}, tags, removeTags, properties, ...}``).

        Matches on e-mail case-insensitively. Validates everything before changing anything, so
        a ValueError (LimitError for a length) leaves the store untouched.
        """
        return self.apply_upsert(self.validate_entry(entry), owner)

    def apply_upsert(
        self, plan: dict[str, Any], owner: str | None = None, stamp: int | None = None
    ) -> tuple[str, bool]:
        """Apply an entry already checked by :meth:`validate_entry`; ``stamp`` is the request's
        time (one for all entries of a batch), now when not given."""
        contact_id = self._by_email.get(plan["email"].lower())
        return self._apply(plan, contact_id, owner, allow_create=True, stamp=stamp)

    def insert(self, entry: dict[str, Any], owner: str | None = None) -> str:
        plan = self.validate_entry(entry)
        if self.id_for_email(plan["email"]):
            raise ValueError(f"a contact with the email {plan['email']!r} already exists")
        return self._apply(plan, None, owner, allow_create=True)[0]

    def update(self, contact_id: str, entry: dict[str, Any], owner: str | None = None) -> str:
        """Change an existing contact; ``contact.email``, when given, becomes its new e-mail."""
        current = self.contacts.get(contact_id)
        if current is None:
            raise KeyError(contact_id)
        body = dict(entry)
        inner = dict(body.get("contact") or {})
        if inner.get("email") and not body.get("newEmail"):
            body["newEmail"] = inner["email"]
        inner["email"] = current["email"]
        body["contact"] = inner
        plan = self.validate_entry(body)
        return self._apply(plan, contact_id, owner, allow_create=False)[0]

    def validate_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The plan :meth:`apply_upsert` applies; ValueError (LimitError for a length) naming
        what is wrong. The common well-formed shape takes a fast path giving the same plan."""
        plan = _fast_plan(entry)
        if plan is not None:
            return plan
        return self._full_plan(entry)

    def _full_plan(self, entry: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(entry, dict):
            raise ValueError("an upsert entry must be a JSON object")
        inner = entry.get("contact")
        if inner is None:
            inner = {}
        if not isinstance(inner, dict):
            raise ValueError("field 'contact' must be a JSON object")
        email = inner.get("email")
        if type(email) is not str or len(email) > TEXT_LIMIT or not _EMAIL_MATCH(email):
            email = check_email(email)  # raises the error that names what is wrong
        fields: dict[str, Any] = {}
        for name in CONTACT_TEXT_FIELDS:
            value = inner.get(name)
            if value is not None:
                if type(value) is not str or len(value) > TEXT_LIMIT:
                    value = _text(name, value)
                fields[name] = value
        province = entry.get("province", inner.get("province"))
        if province is not None:
            check_length("province", province)
            fields["province"] = str(province)
        address_in = inner.get("address")
        address_in = address_in if isinstance(address_in, dict) else _NO_ADDRESS
        address: dict[str, Any] = {}
        for name in ADDRESS_FIELDS:
            value = address_in.get(name, inner.get(name))
            if value is not None:
                if type(value) is not str or len(value) > TEXT_LIMIT:
                    value = _text(name, value)
                address[name] = value
        new_email = entry.get("newEmail")
        if new_email:
            check_email(new_email, "newEmail")
            other = self.id_for_email(new_email)
            if other and other != self.id_for_email(email):
                raise ValueError(f"field 'newEmail': {new_email!r} belongs to another contact")
        tags = self._tag_list(entry, "tags")
        remove_tags = self._tag_list(entry, "removeTags")
        properties = entry.get("properties") or {}
        if not isinstance(properties, dict):
            raise ValueError("field 'properties' must be a JSON object")
        props: dict[str, str | None] = {}
        for name, value in properties.items():
            if len(name) > TEXT_LIMIT:
                check_length("properties (name)", name)
            text = None if value is None else (value if type(value) is str else str(value))
            if text is not None and len(text) > TEXT_LIMIT:
                check_length(f"properties.{name}", text)
            props[name] = text
        birthday = entry.get("birthday", inner.get("birthday"))
        if birthday is None or birthday == "":
            parsed = None
        elif type(birthday) is str:
            parsed = _parse_birthday_text(birthday)
        else:
            parsed = _parse_birthday(birthday)
        return {
            "email": email,
            "newEmail": new_email or None,
            "fields": fields,
            "address": address,
            "tags": tags,
            "removeTags": remove_tags,
            "properties": props,
            "birthday": parsed,
            "optOut": _flag(entry, "forceOptOut", "forceOptIn"),
            "phoneOptOut": _flag(entry, "forcePhoneOptOut", "forcePhoneOptIn"),
        }

    @staticmethod
    def _tag_list(entry: dict[str, Any], key: str) -> list[str]:
        value = entry.get(key)
        if not value:
            return []
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ValueError(f"field '{key}' must be a list of strings")
        tags = []
        for index, tag in enumerate(value):
            if len(tag) > TEXT_LIMIT:
                check_length(f"{key}[{index}]", tag)
            if tag.strip():
                tags.append(tag)
        return tags

    def _apply(
        self,
        plan: dict[str, Any],
        contact_id: str | None,
        owner: str | None,
        *,
        allow_create: bool,
        stamp: int | None = None,
    ) -> tuple[str, bool]:
        if stamp is None:
            stamp = now_ms()
        created = contact_id is None
        if created:
            if not allow_create:
                raise KeyError(plan["email"])
            email = plan["newEmail"] or plan["email"]
            key = email.lower()
            contact = self._blank_contact(self._new_contact_id(key), email, stamp)
            if owner:
                contact["mainContactOwner"] = owner
            self._insert(contact, key)
        else:
            contact = self.contacts[contact_id]
            if plan["newEmail"] and plan["newEmail"] != contact["email"]:
                self._by_email.pop(contact["email"].lower(), None)
                contact["email"] = plan["newEmail"]
                self._by_email[contact["email"].lower()] = contact["id"]
        contact.update(plan["fields"])
        if plan["address"]:
            if created:  # its own fresh blank address, shared with nothing yet
                contact["address"].update(plan["address"])
            else:
                contact["address"] = {**(contact["address"] or _NO_ADDRESS), **plan["address"]}
        if plan["birthday"] is not None:
            year, month, day = plan["birthday"]
            contact["birthdayYear"] = year
            contact["birthdayMonth"] = month
            contact["birthdayDay"] = day
        if plan["optOut"] is not None:
            contact["optedOut"] = plan["optOut"]
        if plan["phoneOptOut"] is not None:
            contact["optedOutPhone"] = plan["phoneOptOut"]
        if plan["tags"] or plan["removeTags"]:
            contact["contactTags"] = _merge_tags(
                contact["contactTags"], plan["tags"], plan["removeTags"], stamp
            )
        if plan["properties"]:
            if contact["properties"]:
                merged = {p["name"]: p["value"] for p in contact["properties"]}
                for name, value in plan["properties"].items():
                    if value is None:
                        merged.pop(name, None)
                    else:
                        merged[name] = value
            else:  # nothing to merge with (a new contact's): the given values, None dropped
                merged = plan["properties"]
            listed = [{"name": k, "value": v} for k, v in merged.items() if v is not None]
            contact["properties"] = listed or EMPTY
        contact["modifiedOn"] = stamp
        return contact["id"], created

    # -- external events and tasks ------------------------------------------------------------
    def add_event(self, contact_id: str, event: dict[str, Any]) -> str:
        contact = self.contacts[contact_id]
        record = self._event_record(event, event.get("eventId") or self._new_id())
        self._replace_list(contact, "contactExtEvents", [*contact["contactExtEvents"], record])
        self._event_owner[record["eventId"]] = contact_id
        return record["eventId"]

    def update_event(self, event_id: str, event: dict[str, Any]) -> bool:
        contact_id = self._event_owner.get(event_id)
        if contact_id is None:
            return False
        contact = self.contacts[contact_id]
        record = self._event_record(event, event_id)
        events = [record if e["eventId"] == event_id else e for e in contact["contactExtEvents"]]
        self._replace_list(contact, "contactExtEvents", events)
        return True

    def delete_event(self, event_id: str) -> bool:
        contact_id = self._event_owner.pop(event_id, None)
        if contact_id is None:
            return False
        contact = self.contacts[contact_id]
        events = [e for e in contact["contactExtEvents"] if e["eventId"] != event_id]
        self._replace_list(contact, "contactExtEvents", events)
        return True

    @staticmethod
    def _event_record(event: dict[str, Any], event_id: str) -> dict[str, Any]:
        return {
            "eventId": event_id,
            "date": event.get("date"),
            "description": event.get("description"),
            "products": event.get("products"),
            "location": event.get("location"),
            "value": event.get("value"),
            "contactExtEventType": event.get("contactExtEventType"),
            **{key: event.get(key) for key in DETAIL_KEYS},
            "externalId": event.get("externalId"),
        }

    def task_contact(self, task_id: str) -> str | None:
        return self._task_owner.get(task_id)

    def put_task(self, contact_id: str, task: dict[str, Any]) -> str:
        """Add a task to the contact, or replace the task with the same id (moving it if needed)."""
        task_id = task.get("id") or self._new_id()
        record = {key: task.get(key) for key in ("note", "date", "cc", "reminder")}
        record = {"id": task_id, **record}
        previous = self._task_owner.get(task_id)
        if previous is not None and previous != contact_id:
            self.delete_task(task_id)
        contact = self.contacts[contact_id]
        tasks = list(contact["contactTasks"])
        for index, existing in enumerate(tasks):
            if existing["id"] == task_id:
                tasks[index] = record
                break
        else:
            tasks.append(record)
        self._replace_list(contact, "contactTasks", tasks)
        self._task_owner[task_id] = contact_id
        return task_id

    def delete_task(self, task_id: str) -> bool:
        contact_id = self._task_owner.pop(task_id, None)
        if contact_id is None:
            return False
        contact = self.contacts[contact_id]
        tasks = [t for t in contact["contactTasks"] if t["id"] != task_id]
        self._replace_list(contact, "contactTasks", tasks)
        return True

    @staticmethod
    def _replace_list(contact: dict[str, Any], key: str, items: list[dict[str, Any]]) -> None:
        contact[key] = items or EMPTY
        contact["modifiedOn"] = now_ms()


EVENT_LIMITS = {"description": 2048, "products": 512, "location": 255, "externalId": 255}
TASK_LIMITS = {"note": 2048, "cc": 255}
REMINDERS_MS = {
    "15_MIN": 15 * 60_000,
    "30_MIN": 30 * 60_000,
    "1_HOUR": 3_600_000,
    "12_HOUR": 12 * 3_600_000,
    "1_DAY": 86_400_000,
    "1_WEEK": 7 * 86_400_000,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_event(event: Any) -> dict[str, Any]:
    """Validate a ``contactEvent`` object as the reference's field table says."""
    if not isinstance(event, dict):
        raise ValueError("field 'contactEvent' must be a JSON object")
    for name, limit in EVENT_LIMITS.items():
        check_length(name, event.get(name), limit)
    for name in DETAIL_KEYS:
        check_length(name, event.get(name))
    kind = event.get("contactExtEventType")
    if kind not in EXT_EVENT_TYPES:
        allowed = ", ".join(sorted(EXT_EVENT_TYPES))
        raise ValueError(f"field 'contactExtEventType' must be one of {allowed}, got {kind!r}")
    if not _is_int(event.get("date")):
        raise ValueError(f"field 'date' must be epoch milliseconds, got {event.get('date')!r}")
    value = event.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"field 'value' must be a number, got {value!r}")
    return event


def check_task(task: Any) -> dict[str, Any]:
    """Validate ``smContactTaskReq`` and turn its reminder code into epoch ms."""
    if not isinstance(task, dict):
        raise ValueError("field 'smContactTaskReq' must be a JSON object")
    for name, limit in TASK_LIMITS.items():
        check_length(name, task.get(name), limit)
    check_length("id", task.get("id"))
    when = task.get("date")
    if not _is_int(when):
        raise ValueError(f"field 'date' must be epoch milliseconds, got {when!r}")
    reminder = task.get("reminder")
    if isinstance(reminder, str):
        offset = REMINDERS_MS.get(reminder.lstrip("_"))
        if offset is None:
            allowed = ", ".join(REMINDERS_MS)
            raise ValueError(f"field 'reminder' must be one of {allowed}, got {reminder!r}")
        reminder = when - offset
    elif reminder is not None and not _is_int(reminder):
        raise ValueError(f"field 'reminder' must be a reminder code, got {reminder!r}")
    return {**task, "reminder": reminder}


def _fast_plan(entry: Any) -> dict[str, Any] | None:
    """:meth:`SalesManagoStore.validate_entry`'s plan for the shape a bulk import sends (only
    the keys below; str values within the limits; no ``newEmail``, ``removeTags`` or opt-in/out
    flags), or None for anything else, which the full validation then checks (and names)."""
    if type(entry) is not dict or not entry.keys() <= _FAST_ENTRY_KEYS:
        return None
    inner = entry.get("contact")
    if type(inner) is not dict or not inner.keys() <= _FAST_CONTACT_KEYS:
        return None
    email = inner.get("email")
    if type(email) is not str or len(email) > TEXT_LIMIT or not _EMAIL_MATCH(email):
        return None
    fields = inner.copy()
    del fields["email"]
    address_in = fields.pop("address", None)
    for value in fields.values():  # a null value (not stored) takes the full validation too
        if type(value) is not str or len(value) > TEXT_LIMIT:
            return None
    province = entry.get("province")
    if province is not None:
        if type(province) is not str or len(province) > TEXT_LIMIT:
            return None
        fields["province"] = province
    address: dict[str, Any] = {}
    if type(address_in) is dict:
        for name in ADDRESS_FIELDS:
            value = address_in.get(name)
            if value is not None:
                if type(value) is not str or len(value) > TEXT_LIMIT:
                    return None
                address[name] = value
    elif address_in is not None:
        return None
    tags = entry.get("tags")
    if not tags:
        tags = []
    elif type(tags) is list:
        for tag in tags:
            if type(tag) is not str or len(tag) > TEXT_LIMIT or not tag.strip():
                return None
    else:
        return None
    properties = entry.get("properties")
    if not properties:
        properties = {}
    elif type(properties) is dict:
        for name, value in properties.items():
            if len(name) > TEXT_LIMIT or (
                value is not None and (type(value) is not str or len(value) > TEXT_LIMIT)
            ):
                return None
    else:
        return None
    birthday = entry.get("birthday")
    if birthday is None or birthday == "":
        parsed = None
    elif type(birthday) is str:
        try:
            parsed = _parse_birthday_text(birthday)
        except ValueError:
            return None
    else:
        return None
    return {
        "email": email,
        "newEmail": None,
        "fields": fields,
        "address": address,
        "tags": tags,
        "removeTags": [],
        "properties": properties,
        "birthday": parsed,
        "optOut": None,
        "phoneOptOut": None,
    }


def _flag(entry: dict[str, Any], out_key: str, in_key: str) -> bool | None:
    """The opt-out state forced by an entry: True, False, or None when not forced."""
    if entry.get(out_key) is True:
        return True
    if entry.get(in_key) is True:
        return False
    return None


def _merge_tags(
    current: Any, add: list[str], remove: list[str], stamp: int
) -> list[dict[str, Any]] | tuple[()]:
    """Tags compare case-insensitively; removals apply after additions, as one request."""
    if not remove:  # a new contact's tags, or a re-import's (usually all present: list kept)
        current = current or EMPTY
        present = {t["tag"].lower() for t in current}
        added = []
        for tag in add:
            key = tag.lower()
            if key not in present:
                present.add(key)
                added.append(tag_record(tag, 0, stamp))
        return [*current, *added] if added else current
    removed = {t.lower() for t in remove}
    tags = [t for t in current if t["tag"].lower() not in removed]
    present = {t["tag"].lower() for t in tags}
    for tag in add:
        key = tag.lower()
        if key not in present and key not in removed:
            tags.append(tag_record(tag, 0, stamp))
            present.add(key)
    return tags or EMPTY
