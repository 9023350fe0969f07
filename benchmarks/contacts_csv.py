"""A deterministic, realistic contacts spreadsheet for import benchmarks.

The file looks like a CRM or spreadsheet export: UTF-8 with a BOM, comma-separated, ``\\r\\n``
line endings, headers the automatic mapping knows (First Name, E-mail, Phone, Zip Code, ...) and
one custom column (Customer Tier, which becomes a contact property). Names and places carry
non-ASCII letters; phones come mostly in German national formats (read with the default region
DE) and some in international formats; birthdays in three formats or empty; tags separated by
``;`` or ``,``.

A small share of rows is invalid, each with exactly one problem (an email without a domain or with
a space, an impossible birthday, a phone too short), and a small share repeats the email of an
earlier valid row (in other letter case), so the expected row accounting is known exactly.
"""

from __future__ import annotations

import csv
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path

HEADER = (
    "First Name",
    "Last Name",
    "E-mail",
    "Phone",
    "Company",
    "Street",
    "Zip Code",
    "City",
    "Country",
    "Birthday",
    "Tags",
    "Customer Tier",
)
FIRST_NAMES = (
    "Anna", "Björn", "Zoë", "Łukasz", "Jürgen", "Søren", "Renée", "François", "Begoña", "Ewa",
    "Mateusz", "Katarzyna", "Günter", "Mareike", "Jan", "Petra", "Ole", "Ingrid", "Tomás",
    "Lucía", "Émilie", "Hélène", "Max", "Lena", "Paul", "Sophie", "Jonas", "Mia", "Felix", "Emma",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schröder", "Wąsowska", "Dvořák", "Åberg", "Bézier", "Fernández",
    "Nowak", "Kowalski", "Weber", "Wagner", "Becker", "Hoffmann", "Schäfer", "Koch", "Richter",
    "Klein", "Wolf", "Neumann", "Schwarz", "Zimmermann", "Krüger", "Hartmann", "Lange", "Groß",
)  # fmt: skip
DOMAINS = ("web.de", "gmx.de", "posteo.de", "t-online.de", "firma.de", "onet.pl", "free.fr")
COMPANIES = (
    "Bäckerei Groß GmbH", "Müller & Söhne KG", "Łódzkie Młyny S.A.", "Bézier & Fils SARL",
    "Schröder Maschinenbau GmbH", "Nordlicht Logistik AG", "Café Élysée", "Weber IT Services",
)  # fmt: skip
# (city, zip prefix, country, landline area code)
PLACES_DE = (
    ("Berlin", "10", "Germany", "30"),
    ("Hamburg", "20", "Germany", "40"),
    ("München", "80", "Germany", "89"),
    ("Köln", "50", "Germany", "221"),
    ("Frankfurt am Main", "60", "Germany", "69"),
    ("Düsseldorf", "40", "Germany", "211"),
    ("Leipzig", "04", "Germany", "341"),
)
PLACES_ABROAD = (
    ("Łódź", "90-001", "Poland", "+48"),
    ("Paris", "75001", "France", "+33"),
    ("Sevilla", "41001", "Spain", "+34"),
    ("Wien", "1010", "Austria", "+43"),
)
STREETS = ("Königstraße", "Schloßallee", "Hauptstraße", "Am Güterbahnhof", "Bahnhofstraße")
TAGS = ("lead", "vip", "newsletter", "partner", "churn-risk", "webinar-2025", "trade-fair")
TIERS = ("Gold", "Silver", "Bronze", "Platinum", "", "")
MOBILE_PREFIXES_DE = ("151", "152", "157", "160", "162", "170", "171", "172", "176", "177")
# Every pattern below gives numbers libphonenumber accepts as valid (checked on 3000 samples each).
_FOLD = str.maketrans({"ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "æ": "ae", "Å": "A", "å": "a"})


@dataclass(frozen=True)
class GeneratedCsv:
    """What the generator wrote, and the row accounting an import of it must report."""

    path: Path
    rows: int
    invalid: int  # rejected by validation
    duplicates: int  # valid rows whose email a later row repeats (policy "last")
    size_bytes: int

    @property
    def loaded(self) -> int:
        return self.rows - self.invalid - self.duplicates

    @property
    def valid(self) -> int:
        """Rows that pass validation (duplicates included)."""
        return self.rows - self.invalid


def ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def _mobile_de(rng: random.Random) -> str:
    """A German mobile number without the leading 0 (015x numbers have 8 digits after it)."""
    prefix = rng.choice(MOBILE_PREFIXES_DE)
    return f"{prefix} {rng.choice('23456789')}{_digits(rng, 7 if prefix[1] == '5' else 6)}"


def _phone_de(rng: random.Random, area: str) -> str:
    kind = rng.random()
    if kind < 0.35:
        return f"0{_mobile_de(rng)}"
    if kind < 0.6:
        return f"0{area} {rng.choice('23456789')}{_digits(rng, 6)}"
    if kind < 0.75:
        return f"({'0' + area}) {rng.choice('23456789')}{_digits(rng, 2)}-{_digits(rng, 4)}"
    if kind < 0.9:
        return f"+49 (0){area} {rng.choice('23456789')}{_digits(rng, 6)}"
    return f"0049 {_mobile_de(rng)}"


def _phone_abroad(rng: random.Random, code: str) -> str:
    if code == "+48":
        return f"+48 {rng.choice(('512', '601', '691', '780'))} {_digits(rng, 3)} {_digits(rng, 3)}"
    if code == "+33":
        return f"+33 6 1{_digits(rng, 1)} {' '.join(_digits(rng, 2) for _ in range(3))}"
    if code == "+34":
        return f"+34 6{_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}"
    return f"+43 664 {_digits(rng, 7)}"


def _birthday(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return ""
    year, month, day = rng.randint(1940, 2004), rng.randint(1, 12), rng.randint(1, 28)
    form = rng.random()
    if form < 0.5:
        return f"{year:04d}-{month:02d}-{day:02d}"
    if form < 0.8:
        return f"{day:02d}.{month:02d}.{year:04d}"
    return f"{day:02d}/{month:02d}/{year:04d}"


def _tags(rng: random.Random) -> str:
    chosen = rng.sample(TAGS, rng.randint(0, 3))
    return rng.choice(("; ", ",", ";")).join(chosen)


def _invalidate(rng: random.Random, row: list[str]) -> None:
    """One problem per row, so each invalid row is exactly one reject."""
    kind = rng.randrange(4)
    if kind == 0:
        row[2] = row[2].split("@")[0] + "@"  # no domain
    elif kind == 1:
        row[2] = row[2].replace(".", " ", 1)  # a space in the address
    elif kind == 2:
        row[9] = "31.02.1990"  # no such day
    else:
        row[3] = _digits(rng, 3)  # too short for any phone


def generate(
    path: Path,
    rows: int,
    *,
    seed: int = 2026,
    invalid_share: float = 0.015,
    duplicate_share: float = 0.01,
) -> GeneratedCsv:
    """Write ``rows`` data rows to ``path``; the same arguments give the same bytes."""
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    valid_rows: list[int] = []  # indexes of valid, not yet repeated rows a duplicate may copy
    invalid = duplicates = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(HEADER)
        emails: list[str] = []
        for index in range(rows):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            domain = rng.choice(DOMAINS)
            base = f"{ascii_fold(first)}.{ascii_fold(last)}"
            count = seen.get(f"{base}@{domain}", 0)
            seen[f"{base}@{domain}"] = count + 1
            email = f"{base}{count or ''}@{domain}"
            if rng.random() < 0.3:
                city, zip_code, country, code = rng.choice(PLACES_ABROAD)
                phone = _phone_abroad(rng, code)
            else:
                city, prefix, country, area = rng.choice(PLACES_DE)
                zip_code, phone = f"{prefix}{_digits(rng, 3)}", _phone_de(rng, area)
            if rng.random() < 0.1:
                phone = ""
            row = [
                first,
                last,
                email,
                phone,
                rng.choice(COMPANIES) if rng.random() < 0.6 else "",
                f"{rng.choice(STREETS)} {rng.randint(1, 120)}",
                zip_code,
                city,
                country,
                _birthday(rng),
                _tags(rng),
                rng.choice(TIERS),
            ]
            roll = rng.random()
            if roll < invalid_share:
                _invalidate(rng, row)
                invalid += 1
            elif roll < invalid_share + duplicate_share and valid_rows:
                original = valid_rows.pop(rng.randrange(len(valid_rows)))
                row[2] = f" {emails[original].capitalize()} "  # same address, other spelling
                duplicates += 1
            else:
                valid_rows.append(index)
            emails.append(row[2])
            writer.writerow(row)
    return GeneratedCsv(path, rows, invalid, duplicates, path.stat().st_size)
