"""to_e164 against the per-value phonenumbers reference, on a corpus of every region's
example numbers in many notations, broken numbers and junk."""

from __future__ import annotations

import random

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from benchmarks.contacts_csv import _phone_abroad, _phone_de
from benchmarks.messy_csv import _messy_phone
from etl.transform.phones import fast_path_mask, to_e164

REGIONS = ("DE", "US", "GB", "FR", "IT", "PL", "BR", "IN", "AR", "CA", "JE")
TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
)
JUNK = (
    "",
    "n/a",
    "abc",
    "12",
    "1",
    "+",
    "+0",
    "++49 30 1234567",
    "1-800-FLOWERS",
    "+1 800 FLOWERS",
    "+49 30 1234567 ext 12",
    "+49 30 1234567 ext. 12",
    "030 1234567 x5",
    "030 1234567#",
    "030 1234567 - 12#",
    "(201) 555-0123 x302/x2303",
    "tel:+49-30-1234567",
    "tel:030-1234567;phone-context=+49",
    "030 1234567;isub=12",
    "+49 30 1234567;ext=5",
    "０３０ １２３４５６７",
    "+٤٩ ٣٠ ١٢٣٤٥٦٧",
    "+49\u00a030\u00a01234567",
    "Tel: +49 30 1234567",
    "+49 30 1234567 / 8",
    "0151/12345678",
    "(+49) 151 12345678",
    "-+49 151 12345678-",
    "+49 (0)30 1234567",
    "+44 (0)20 7946 0000",
    "0049 0151 12345678",
    "00 49 30 1234567",
    "0000",
    "+490",
    "4930 1234567",
    "49 151 12345678",
    "1 201 555 0123",
    "8 495 123 45 67",
    "0180020 1234567",
    "+" + "1" * 20,
    "1" * 300,
)


def _examples() -> list[phonenumbers.PhoneNumber]:
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                numbers.append(number)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            numbers.append(number)
    return numbers


def _notations(number: phonenumbers.PhoneNumber, rng: random.Random) -> list[str]:
    cc = str(number.country_code)
    nsn = phonenumbers.national_significant_number(number)
    intl = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    changed = nsn[:-3] + "".join(rng.choice("0123456789") for _ in range(3))
    values = [
        f"+{cc}{nsn}",
        intl,
        national,
        nsn,
        cc + nsn,
        f"00{cc}{nsn}",
        f"011 {cc} {nsn}",
        f"+{cc} (0){nsn}",
        f"+{cc} 0{nsn}",
        f"0{nsn}",
        f"+{cc}{nsn[:-1]}",
        f"+{cc}{nsn}{rng.randrange(10)}",
        f"{nsn[:-1]}",
        f"{nsn}{rng.randrange(10)}",
        f"+{cc}{changed}",
        changed,
        intl.replace(" ", rng.choice(("-", ".", "/", "", "  "))),
        national.replace(" ", rng.choice(("-", ".", "/", ""))),
        f"({nsn[:3]}) {nsn[3:]}",
        f"+{cc} {nsn} ext. 12",
    ]
    return values


def _corpus() -> list[str | None]:
    rng = random.Random(6)
    values: list[str | None] = [*JUNK, None]
    for number in _examples():
        values += _notations(number, rng)
    for _ in range(1500):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 18)))
        values.append(rng.choice(("", "+", "0", "00", "+1 ", "+49 ")) + digits)
    for _ in range(400):
        values += [_messy_phone(rng), _phone_de(rng, rng.choice(("30", "89", "341")))]
        values.append(_phone_abroad(rng, rng.choice(("+48", "+33", "+34", "+43"))))
    return values


def _reference(value: str, region: str) -> str | None:
    """The per-value path to_e164 must agree with (contact_rules.e164, written out here)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    text = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return f"{text};ext={number.extension}" if number.extension else text


CORPUS = _corpus()
# Values per default region besides the junk (the reference costs ~0.1 ms a value).
SAMPLE = {"DE": 8000, "US": 4000}


def _sample(region: str) -> list[str | None]:
    rng = random.Random(region)
    return [*JUNK, None, *rng.sample(CORPUS, SAMPLE.get(region, 2000))]


@pytest.mark.parametrize("region", REGIONS)
def test_to_e164_equals_phonenumbers(region: str) -> None:
    corpus = _sample(region)
    got = to_e164(pa.array(corpus, pa.string()), region)
    assert got.type == pa.string() and len(got) == len(corpus)
    # Sorted, so that numbers of one country come together and Python's regex cache holds.
    reference = {v: _reference(v, region) for v in sorted({v for v in corpus if v is not None})}
    expected = [None if v is None else reference[v] for v in corpus]
    wrong = [(v, g, e) for v, g, e in zip(corpus, got.to_pylist(), expected, strict=True) if g != e]
    assert wrong == [], wrong[:20]


def test_chunked_input_and_nulls() -> None:
    chunks = pa.chunked_array([["030 1234567", None], [], ["+49 151 12345678", "", "n/a"]])
    got = to_e164(chunks, "DE").to_pylist()
    assert got == ["+49301234567", None, "+4915112345678", None, None]
    assert to_e164(pa.array([], pa.string()), "DE").to_pylist() == []
    sliced = pa.array(["x", "030 1234567", None, "+49 (0)30 123456"]).slice(1)
    assert to_e164(sliced, "DE").to_pylist() == ["+49301234567", None, "+4930123456"]
    assert to_e164(pa.array(["+1 201-555-0123 ext. 7"], pa.large_string()), "DE").to_pylist() == [
        "+12015550123;ext=7"
    ]


def test_fast_path_takes_the_common_shapes() -> None:
    """The spreadsheet notations the benchmarks emit, and every example number written
    +<code>, international or national, are decided without phonenumbers."""
    rng = random.Random(7)
    messy = [_messy_phone(rng) for _ in range(3000)]
    tidy = [_phone_de(rng, "30") for _ in range(1000)]
    tidy += [_phone_abroad(rng, c) for c in ("+48", "+33", "+34", "+43") for _ in range(250)]
    for values, share in ((messy, 0.99), (tidy, 1.0)):
        mask = np.asarray(fast_path_mask(pa.array(values), "DE"))
        assert len(mask) == len(values) and mask.mean() >= share
    examples = _examples()
    e164 = [phonenumbers.format_number(n, PhoneNumberFormat.E164) for n in examples]
    intl = [phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL) for n in examples]
    for values in (e164, intl):
        assert np.asarray(fast_path_mask(pa.array(values), "DE")).mean() >= 0.98
    for region in ("DE", "GB", "FR", "IN", "US", "IT", "PL"):
        national = [
            phonenumbers.format_number(phonenumbers.example_number_for_type(region, kind), fmt)
            for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE)
            for fmt in (PhoneNumberFormat.NATIONAL, PhoneNumberFormat.E164)
        ]
        assert np.asarray(fast_path_mask(pa.array(national), region)).all(), region
