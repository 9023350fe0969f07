"""A deterministic *messy* contact spreadsheet, as hand-kept exports come, at any size.

The file is shaped like ``sample_data/contacts_messy.csv`` at any size: ``;``-separated,
``\\r\\n`` line endings, names as ``First Last``, ``Last, First`` or padded, emails in mixed case
with stray spaces, German and international phones in a dozen notations, birthdays in seven
formats, tags split by ``;``, ``,`` or ``|``, quoted notes with line breaks and, at low rates,
the faults real files have (invalid emails and phones, impossible dates, ragged rows, duplicate
emails). Read it with :data:`MESSY_MAPPING` and ``default_region = "DE"``, as
``pipelines/csv_to_salesmanago.toml`` does.
(:mod:`benchmarks.contacts_csv` writes the tidier file the import benchmarks load.)
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

MESSY_MAPPING: dict[str, str] = {
    "Customer Tier": "properties.customer_tier",
    "Notes": "ignore",
}
MESSY_REGION = "DE"

FIRST = (
    "Anna", "Jürgen", "Renée", "Søren", "Käthe", "Ludwig", "Grete", "Marlène", "Günther", "Zoë",
    "Łukasz", "José", "Chloé", "Björn", "Ines", "Mateo", "Aoife", "François", "Małgorzata", "Ayşe",
    "Priya", "Wei", "Hiroshi", "Kwame", "Joaquín", "Guðrún", "Päivi", "Ioana", "Dmitri", "Niamh",
    "Hans", "Max", "Sophie", "Peter", "Kurt", "Jana", "Lena", "Paul", "Emma", "Noah",
)  # fmt: skip
LAST = (
    "Müller", "Schröder", "Jäger", "Straßer", "Dürr", "Vogel", "Bäcker", "Weiß", "Kowalski",
    "Nowak", "Wiśniewski", "Dvořák", "Ørsted", "Åberg", "O'Brien", "Nguyễn", "Tanaka", "Patel",
    "Okafor", "Rossi", "Fernández", "Dubois", "Yılmaz", "Ivanov", "Virtanen", "van der Berg",
    "Schmidt", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann", "Schulz", "Koch", "Richter",
)  # fmt: skip
COMPANIES = (
    "Schröder Maschinenbau GmbH", "Müller & Söhne KG", "Café Élysée", "Nordlicht Logistik AG",
    "Bäckerei Groß GmbH", "Acme Corp", "Globex", "Initech", "Łódzkie Młyny S.A.", "",
)  # fmt: skip
STREETS = (
    "Hauptstraße", "Königstraße", "Am Güterbahnhof", "Lindenweg", "Schloßallee", "Heidestraße",
    "Bahnhofstraße", "Marktplatz", "Gartenstraße", "Mühlenweg",
)  # fmt: skip
PLACES = (
    ("10115", "Berlin", "30"),
    ("20095", "Hamburg", "40"),
    ("80331", "München", "89"),
    ("50667", "Köln", "221"),
    ("60311", "Frankfurt am Main", "69"),
    ("70173", "Stuttgart", "711"),
    ("04109", "Leipzig", "341"),
)
COUNTRIES = ("Germany", "Germany", "Deutschland", "DE", "germany ")
MOBILE = ("151", "152", "157", "160", "170", "171", "172", "175", "176", "177", "178", "179")
DOMAINS = ("web.de", "gmx.de", "firma.de", "example.com", "posteo.de", "t-online.de")
TAGS = ("vip", "newsletter", "partner", "lead", "churn-risk", "webinar-2025", "b2b", "trade-fair")
TIERS = ("Gold", "Silver", "Bronze", "", "")
MONTHS = ("January", "March", "May", "August", "October", "Dezember", "Mai", "Juli")
NOTES = (
    "",
    "",
    "",
    "Rückruf erbeten",
    "Kunde seit 2019",
    "Messe 2025 – Stand 4",
    "Called on Monday;\r\nwants a quote for 3 licences (€ 1.200)",
    'Said "call me later"',
)
RAGGED_NOTE = "ruft zurück; morgen"

MESSY_HEADER = (
    "Full Name", "E-mail", "Phone 1", "Street", "Zip/Postal Code", "City", "Country",
    "Organisation", "DOB", "Labels", "Customer Tier", "Notes",
)  # fmt: skip


@dataclass(frozen=True)
class MessyCsv:
    path: Path
    rows: int  # data records written (a record may span lines)
    size_bytes: int
    delimiter: str = ";"
    encoding: str = "utf-8"


def _subscriber(r: random.Random, digits: int) -> str:
    return str(r.randrange(10 ** (digits - 1), 10**digits))


def _messy_phone(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.06:
        return ""
    if roll < 0.065:
        return r.choice(("12", "123", "0000", "n/a"))  # invalid
    if roll < 0.12:  # foreign numbers in international notation
        return r.choice(
            (
                f"+44 20 7946 {r.randrange(1000):04d}",
                f"+33 1 42 {r.randrange(100):02d} {r.randrange(100):02d} {r.randrange(100):02d}",
                f"+48 512 {r.randrange(1000):03d} {r.randrange(1000):03d}",
                f"+43 1 5{_subscriber(r, 6)}",
            )
        )
    if roll < 0.55:  # mobile
        prefix = r.choice(MOBILE)
        number = _subscriber(r, 8 if prefix.startswith("15") or r.random() < 0.5 else 7)
        form = r.randrange(6)
        return (
            f"0{prefix} {number}",
            f"0{prefix}/{number}",
            f"+49 {prefix} {number}",
            f"0049 {prefix} {number[:4]} {number[4:]}",
            f"+49-{prefix}-{number}",
            f"(0{prefix}) {number}",
        )[form]
    area = r.choice(PLACES)[2]
    number = _subscriber(r, 7)
    form = r.randrange(6)
    return (
        f"0{area} {number}",
        f"0{area}/{number}",
        f"+49 (0){area} {number}",
        f"+49 {area} {number}",
        f"0{area}-{number[:3]} {number[3:]}",
        f"0049{area}{number}",
    )[form]


def _messy_birthday(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.15:
        return ""
    if roll < 0.153:
        return r.choice(("31/02/1990", "1970-13-01", "32.13.1980", "someday"))
    y, m, d = r.randrange(1940, 2006), r.randrange(1, 13), r.randrange(1, 29)
    form = r.randrange(8)
    if form == 6:
        month = r.choice(MONTHS)
        return f"{d}. {month} {y}" if r.random() < 0.3 else f"{d} {month} {y}"
    return (
        f"{y}-{m:02d}-{d:02d}",
        f"{y}{m:02d}{d:02d}",
        f"{d:02d}.{m:02d}.{y}",
        f"{d:02d}/{m:02d}/{y}",
        f"{y}-{m:02d}-{d:02d} 00:00:00",
        f"{d}.{m}.{y}",
        "",
        f"{y}/{m:02d}/{d:02d}",
    )[form]


def _tags(r: random.Random, separator: str) -> str:
    return separator.join(r.sample(TAGS, r.randrange(0, 4)))


def _messy_row(r: random.Random, i: int, emails: list[str]) -> list[str]:
    first, last = r.choice(FIRST), r.choice(LAST)
    form = r.randrange(5)
    name = (
        f"{first} {last}",
        f"{last}, {first}",
        f" {first}  {last} ",
        f"{first} {last}",
        f"{first.upper()} {last}",
    )[form]
    email = f"{first}.{last}.{i}@{r.choice(DOMAINS)}".lower().replace(" ", "").replace("'", "")
    roll = r.random()
    if roll < 0.005:
        email = ""
    elif roll < 0.012:
        email = r.choice((f"{first}.{last}@", f"{first} {last}@web.de", f"x{i}@@web.de"))
    elif roll < 0.022 and emails:
        email = emails[r.randrange(len(emails))]  # a duplicate of an earlier row
    elif roll < 0.2:
        email = f"  {email.title()} "
    if email and "@" in email and len(emails) < 10_000:
        emails.append(email.strip().lower())
    zip_code, city, _ = r.choice(PLACES)
    company = r.choice(COMPANIES)
    if r.random() < 0.001:
        company = "X" * 300  # over the 255-character limit
    notes = r.choice(NOTES)
    row = [
        name,
        email,
        _messy_phone(r),
        f"{r.choice(STREETS)} {r.randrange(1, 200)}",
        zip_code,
        city,
        r.choice(COUNTRIES),
        company,
        _messy_birthday(r),
        _tags(r, r.choice(("; ", ",", "|", ", "))),
        r.choice(TIERS),
        notes,
    ]
    if r.random() < 0.002:  # an unquoted delimiter in the notes: one field too many
        row[-1] = RAGGED_NOTE
    return row


def write_messy_csv(path: Path, rows: int, seed: int = 7) -> MessyCsv:
    """Write ``rows`` data records to ``path`` (the same arguments give the same bytes)."""
    r = random.Random(f"messy-{seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        writer.writerow(MESSY_HEADER)
        emails: list[str] = []
        for i in range(rows):
            row = _messy_row(r, i, emails)
            if row[-1] == RAGGED_NOTE:
                handle.write(";".join(row) + "\r\n")  # unquoted on purpose: one field too many
            else:
                writer.writerow(row)
    return MessyCsv(path, rows, path.stat().st_size)
