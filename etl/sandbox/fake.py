"""Deterministic, realistic value pools for the sandbox emulators.

Every helper takes a :class:`random.Random` so a seed fixes the whole data set. Timestamps are
drawn from the three years before a fixed anchor (not the wall clock), so the same seed gives the
same data on any day. Helpers index pools with ``rng.random()`` rather than ``rng.choice`` because
seeding a million contacts calls them tens of millions of times.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")

ANCHOR_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
"""The fixed "now" of seeded data: every seeded timestamp lies in the 3 years before it."""
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
THREE_YEARS_MS = 3 * YEAR_MS

FIRST_NAMES: tuple[str, ...] = (
    "Anna", "James", "Maria", "John", "Sofia", "Liam", "Emma", "Noah", "Olivia", "Lucas",
    "Zoë", "Łukasz", "José", "Chloé", "Søren", "Björn", "Ines", "Mateo", "Aoife", "Siobhán",
    "François", "Renée", "Jürgen", "Małgorzata", "Žofie", "Dvořák", "Nikolaj", "Agnieszka",
    "Mehmet", "Ayşe", "Çağrı", "Fatima", "Omar", "Priya", "Rahul", "Ananya", "Wei", "Mei",
    "Hiroshi", "Yuki", "Min-jun", "Seo-yeon", "Thanh", "Linh", "Kwame", "Amara", "Chidi",
    "Thandiwe", "Pedro", "Joaquín", "Guðrún", "Ólafur", "Eero", "Päivi", "Ilse", "Dagný",
    "Ioana", "Stefan", "Nadia", "Dmitri", "Oksana", "Tomás", "Niamh", "Raúl", "Elif", "Arjun",
    "李", "王芳", "Ελένη", "Андрей", "Grace", "Daniel", "Chen", "Hana", "Mary-Jane", "D'Andre",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Kowalski", "Nowak", "Wiśniewski",
    "Wójcik", "Šimková", "Dvořáková", "Novák", "Ørsted", "Jørgensen", "Åberg", "Lindqvist",
    "O'Brien", "O'Connor", "McCarthy", "Ní Bhriain", "Nguyễn", "Trần", "Lê", "Phạm", "李", "王",
    "张", "Kim", "Park", "Lee", "Tanaka", "Suzuki", "Yamamoto", "Sato", "Patel", "Sharma",
    "Singh", "Gupta", "Okafor", "Mensah", "Dlamini", "Mwangi", "Rossi", "Bianchi", "Esposito",
    "Fernández", "González", "Rodríguez", "López", "Martín", "Pérez", "Sánchez", "Dubois",
    "Lefèvre", "Moreau", "Yılmaz", "Öztürk", "Kaya", "Ivanov", "Petrov", "Kuznetsova",
    "Papadopoulos", "Jónsdóttir", "Virtanen", "Mäkinen", "van der Berg", "de Vries", "Janssen",
    "Παπαδόπουλος", "Иванова", "Smith-Jones", "da Silva", "dos Santos", "El-Amin", "Ben-David",
)  # fmt: skip

COMPANIES: tuple[str, ...] = (
    "Acme Corp", "Globex", "Initech", "Umbrella plc", "Stark Industries", "Wayne Enterprises",
    "Hooli", "Vandelay Industries", "Soylent GmbH", "Müller & Söhne KG",
    "Łódź Logistics Sp. z o.o.",
    "Nordisk Ørsted A/S", "Café Olé S.L.", "O'Reilly Hardware", "Smith & Wesson Partners",
    "Brück AG", "Société Générale des Eaux", "北京科技有限公司", "Nguyễn Trading Co.",
    "Zürich Re Consulting", "Blue Harbor LLC", "Pine & Maple Co.", "Redwood Analytics",
    "Northwind Traders", "Contoso Ltd", "Fabrikam Inc.", "Tailspin Toys", "Wide World Importers",
    "Adventure Works", "Litware Inc.", "Proseware", "Coho Winery", "Lucerne Publishing",
    "Margie's Travel", "Alpine Ski House", "Fourth Coffee", "Graphic Design Institute",
    "Kowalski i Wspólnicy", "Dvořák s.r.o.", "Åhlens Handel AB", "Tanaka Seisakusho K.K.",
    "Patel Pharma Pvt Ltd", "Okafor Agro Ltd", "Rossi & Figli S.p.A.", "Yılmaz Tekstil A.Ş.",
)  # fmt: skip

STREETS: tuple[str, ...] = (
    "Main Street", "High Street", "Oak Avenue", "Maple Drive", "Church Road", "Station Road",
    "Hauptstraße", "Bahnhofstraße", "Schloßallee", "ul. Marszałkowska", "ul. Długa",
    "Rue de la Paix", "Rue Saint-Honoré", "Calle Mayor", "Gran Vía", "Via Roma",
    "Vesterbrogade", "Drottninggatan", "Karlova", "Václavské náměstí", "O'Connell Street",
    "Nguyễn Huệ", "Elm Street", "Sunset Boulevard", "King's Road", "Queen's Gate",
    "Avenida Paulista", "Rua Augusta", "Istiklal Caddesi", "Nevsky Prospekt", "Andrássy út",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Place:
    city: str
    zip_code: str
    country: str  # ISO 3166-1 alpha-2
    province: str | None


PLACES: tuple[Place, ...] = (
    Place("New York", "10001", "US", "NY"),
    Place("Austin", "73301", "US", "TX"),
    Place("San Francisco", "94103", "US", "CA"),
    Place("Chicago", "60601", "US", "IL"),
    Place("London", "SW1A 1AA", "GB", None),
    Place("Manchester", "M1 1AE", "GB", None),
    Place("Dublin", "D02 X285", "IE", None),
    Place("Berlin", "10115", "DE", "Berlin"),
    Place("München", "80331", "DE", "Bayern"),
    Place("Köln", "50667", "DE", "Nordrhein-Westfalen"),
    Place("Wien", "1010", "AT", None),
    Place("Zürich", "8001", "CH", "ZH"),
    Place("Paris", "75001", "FR", "Île-de-France"),
    Place("Lyon", "69001", "FR", None),
    Place("Madrid", "28013", "ES", "Madrid"),
    Place("Barcelona", "08002", "ES", "Cataluña"),
    Place("Roma", "00184", "IT", "Lazio"),
    Place("Kraków", "31-001", "PL", "małopolskie"),
    Place("Warszawa", "00-001", "PL", "mazowieckie"),
    Place("Łódź", "90-001", "PL", "łódzkie"),
    Place("Praha", "110 00", "CZ", None),
    Place("København", "1050", "DK", None),
    Place("Stockholm", "111 20", "SE", None),
    Place("Helsinki", "00100", "FI", None),
    Place("Reykjavík", "101", "IS", None),
    Place("Amsterdam", "1012 JS", "NL", "Noord-Holland"),
    Place("İstanbul", "34000", "TR", None),
    Place("São Paulo", "01310-100", "BR", "SP"),
    Place("Ciudad de México", "06000", "MX", "CDMX"),
    Place("Toronto", "M5H 2N2", "CA", "ON"),
    Place("Sydney", "2000", "AU", "NSW"),
    Place("Tokyo", "100-0001", "JP", None),
    Place("Seoul", "04524", "KR", None),
    Place("Hà Nội", "100000", "VN", None),
    Place("北京", "100000", "CN", None),
    Place("Mumbai", "400001", "IN", "MH"),
    Place("Lagos", "100001", "NG", None),
    Place("Nairobi", "00100", "KE", None),
    Place("Cape Town", "8001", "ZA", "WC"),
)

TAGS: tuple[str, ...] = (
    "VIP", "NEWSLETTER", "LEAD", "CUSTOMER", "PROSPECT", "WEBINAR_2025", "TRADE_SHOW",
    "B2B", "B2C", "HIGH_VALUE", "CHURN_RISK", "REFERRAL", "PARTNER", "BLACK_FRIDAY",
    "ABANDONED_CART", "LOYALTY", "EVENT_BERLIN", "EBOOK_DOWNLOAD", "DEMO_REQUESTED", "INACTIVE",
)  # fmt: skip

LEAD_SOURCES: tuple[str, ...] = (
    "Website", "Referral", "Trade Show", "Cold Call", "Google Ads", "LinkedIn", "Facebook",
    "Newsletter", "Partner", "Webinar", "Organic Search", "Word of Mouth",
)  # fmt: skip

LOYALTY_TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
CUSTOMER_TIERS: tuple[str, ...] = ("Standard", "Premium", "Enterprise")
PRODUCTS: tuple[str, ...] = (
    "Starter Plan", "Pro Plan", "Enterprise Plan", "Onboarding Package", "Support Add-on",
    "Training Day", "Consulting Hours", "Hardware Kit", "Annual License", "Data Migration",
)  # fmt: skip
EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com", "example.org", "example.net", "mail.example.com", "corp.example.de",
    "firma.example.pl", "example.co.uk", "example.fr",
)  # fmt: skip
HOSTS: tuple[str, ...] = ("www.example.com", "shop.example.com", "blog.example.com")
VISIT_SOURCES: tuple[str, ...] = ("DIRECT", "SEARCH", "SOCIAL", "EMAIL", "REFERRAL", "ADS")
SEARCH_KEYWORDS: tuple[str, ...] = ("crm", "pricing", "demo", "integration", "api", "")
URL_PATHS: tuple[str, ...] = ("/", "/pricing", "/features", "/blog/crm-tips", "/contact", "/cart")

NOTES: tuple[str, ...] = (
    "Called, left a voicemail.",
    "Interested in the Pro plan, send a quote.",
    "Met at the trade show in Berlin.",
    "Asked for a demo next week.",
    "Prefers email over phone.",
    "Renewal due next quarter.",
    "Complained about the invoice; resolved.",
    'Said: "we\'ll think about it".',
    "Customer's assistant will call back.",
    "Great call 🎉 — ready to sign!",
    "Wants a discount ≥ 10 %.",
    "Spricht nur Deutsch, bitte Rückruf.",
    "Zadzwonić po świętach.",
    "Line one\nline two of a multi-line note.",
    "",
)
TASK_NOTES: tuple[str, ...] = (
    "Follow up on the quote",
    "Send the contract",
    "Call back about the renewal",
    "Prepare the demo",
    "Check payment status",
    "Schedule onboarding",
    "Ask for a referral",
)
EVENT_DESCRIPTIONS: tuple[str, ...] = (
    "Online order",
    "Store purchase",
    "Phone order",
    "Renewal",
    "Upsell",
    "Cart left on checkout",
    "",
)

ODD_COMPANY = ("Extremely Long Company Name " * 10)[:255]
"""A company name exactly at the 255-character limit."""
ODD_EMAIL = "Mixed.Case+Newsletter@Example.COM"
ODD_NOTE = "Loved the demo 😀🚀 — O'Brien's team says \"ja\"!"

_TRANSLIT = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "ø": "o",
        "Ø": "O",
        "ß": "ss",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "æ": "ae",
        "ı": "i",
        "İ": "I",
    }
)
_ROMAN = {
    "李": "li",
    "王芳": "wangfang",
    "王": "wang",
    "张": "zhang",
    "Ελένη": "eleni",
    "Андрей": "andrey",
    "Παπαδόπουλος": "papadopoulos",
    "Иванова": "ivanova",
}


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits of ``text``, for building e-mail local parts."""
    if text in _ROMAN:
        return _ROMAN[text]
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    slug = "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()
    return slug or "x"


FIRST_SLUGS: dict[str, str] = {name: ascii_slug(name) for name in FIRST_NAMES}
LAST_SLUGS: dict[str, str] = {name: ascii_slug(name) for name in LAST_NAMES}


def pick(rng: random.Random, pool: tuple[T, ...]) -> T:
    """``rng.choice`` without its overhead."""
    return pool[int(rng.random() * len(pool))]


def sample(rng: random.Random, pool: tuple[T, ...], k: int) -> list[T]:
    """Up to ``k`` distinct items of ``pool`` (a cheap ``rng.sample`` for small ``k``)."""
    n = len(pool)
    if k >= n:
        return list(pool)
    r = rng.random
    chosen: list[T] = []
    while len(chosen) < k:
        item = pool[int(r() * n)]
        if item not in chosen:
            chosen.append(item)
    return chosen


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (``uuid.uuid4`` would ignore the seed).

    Equal to ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, several times faster.
    """
    h = f"{(rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def seeded_uuid_reference(rng: random.Random) -> str:
    """The slow, obviously correct form of :func:`seeded_uuid` (for tests)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def timestamp_ms(
    rng: random.Random, *, end_ms: int = ANCHOR_MS, span_ms: int = THREE_YEARS_MS
) -> int:
    """Epoch ms uniformly in ``[end_ms - span_ms, end_ms)``."""
    return end_ms - span_ms + int(rng.random() * span_ms)


def timestamp_after(rng: random.Random, start_ms: int, *, end_ms: int = ANCHOR_MS) -> int:
    """Epoch ms uniformly in ``[start_ms, end_ms]`` (``start_ms`` if the window is empty)."""
    if end_ms <= start_ms:
        return start_ms
    return start_ms + int(rng.random() * (end_ms - start_ms))


def first_name(rng: random.Random) -> str:
    return pick(rng, FIRST_NAMES)


def last_name(rng: random.Random) -> str:
    return pick(rng, LAST_NAMES)


def email_for(rng: random.Random, first: str, last: str, serial: int) -> str:
    """A unique (by ``serial``) plausible e-mail address for the person."""
    f, last_slug = (
        FIRST_SLUGS.get(first) or ascii_slug(first),
        LAST_SLUGS.get(last) or ascii_slug(last),
    )
    form = int(rng.random() * 4)
    if form == 0:
        local = f"{f}.{last_slug}.{serial}"
    elif form == 1:
        local = f"{f[0]}{last_slug}{serial}"
    elif form == 2:
        local = f"{f}_{serial}"
    else:
        local = f"{last_slug}.{f}{serial}"
    return f"{local}@{pick(rng, EMAIL_DOMAINS)}"


def phone(rng: random.Random) -> str:
    """An international phone number in one of a few common notations."""
    digits = int(rng.random() * 1_000_000_000)
    form = int(rng.random() * 3)
    if form == 0:
        return f"+48 {digits // 1_000_000:03d} {digits // 1000 % 1000:03d} {digits % 1000:03d}"
    if form == 1:
        return f"+1 ({digits // 10_000_000 % 1000:03d}) 555-{digits % 10000:04d}"
    return f"+49{digits:09d}"


def company(rng: random.Random) -> str:
    return pick(rng, COMPANIES)


def street_address(rng: random.Random) -> str:
    number = 1 + int(rng.random() * 250)
    street = pick(rng, STREETS)
    if street.startswith(("ul.", "Rue", "Calle", "Via", "Avenida", "Rua")):
        return f"{street} {number}"
    if street.endswith(("straße", "allee", "gade", "gatan")):
        return f"{street} {number}"
    return f"{number} {street}"


def place(rng: random.Random) -> Place:
    return pick(rng, PLACES)


def tag(rng: random.Random) -> str:
    return pick(rng, TAGS)


def lead_source(rng: random.Random) -> str:
    return pick(rng, LEAD_SOURCES)


def note(rng: random.Random) -> str:
    return pick(rng, NOTES)


def amount(rng: random.Random, low: float = 9.0, high: float = 25_000.0) -> float:
    """A price rounded to cents, skewed towards small amounts."""
    return round(low + (high - low) * rng.random() ** 3, 2)
