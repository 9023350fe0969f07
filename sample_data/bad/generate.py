"""Writes the bad-input corpus next to this file: ``python sample_data/bad/generate.py``.

Every file is built from literals (no randomness, no clock), so running it again reproduces the
committed bytes exactly; ``tests/test_bad_input.py`` checks that too. What each file is for and
what an import makes of it is in ``README.md`` beside it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = "Email,First Name,Last Name,Company,City"


def rows(*lines: str, end: str = "\n") -> str:
    return "".join(line + end for line in lines)


def png(width: int = 4, height: int = 4) -> bytes:
    """A valid, tiny grey PNG: signature, IHDR, IDAT and IEND chunks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = b"".join(b"\x00" + bytes([0x80] * width) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels, 9))
        + chunk(b"IEND", b"")
    )


def corpus() -> dict[str, bytes]:
    long_value = "".join(f"{i % 10}" for i in range(10_000))
    return {
        "empty.csv": b"",
        "header_only.csv": rows(HEADER).encode(),
        "bom.csv": b"\xef\xbb\xbf"
        + rows(
            HEADER,
            "zoe.aberg@example.se,Zoë,Åberg,Åberg & Söner AB,Göteborg",
            "lukasz.dvorak@example.cz,Łukasz,Dvořák,Dvořák s.r.o.,Brno",
            "ines.munoz@example.es,Inés,Muñoz,Muñoz y Hijos,Sevilla",
        ).encode(),
        "latin1.csv": rows(
            HEADER,
            "jose.garcia@example.es,José,García,Café Olé,Málaga",
            "renee.lefevre@example.fr,Renée,Lefèvre,Crème Brûlée SARL,Besançon",
            "juergen.gross@example.de,Jürgen,Groß,Bäckerei Groß,Köln",
            "soren.norgaard@example.dk,Søren,Nørgaard,Nørgaard ApS,Århus",
        ).encode("latin-1"),
        "mixed_line_endings.csv": (
            HEADER
            + "\r\n"
            + "ana.silva@example.pt,Ana,Silva,Silva Lda,Porto\n"
            + "ben.okafor@example.ng,Ben,Okafor,Okafor Ltd,Lagos\r"
            + "chloe.martin@example.fr,Chloé,Martin,Martin SA,Lyon\r\n"
            + 'dara.kim@example.kr,Dara,Kim,"Kim, Lee & Park",Seoul\n'
            + "emil.berg@example.no,Emil,Berg,Berg AS,Bergen"  # no line ending at the end
        ).encode(),
        "semicolons.csv": rows(
            "Email;First Name;Last Name;Company;City",
            "hans.mueller@example.de;Hans;Müller;Müller, Schmidt & Co. KG;München",
            "greta.schmidt@example.de;Greta;Schmidt;Schmidt GmbH;Hamburg",
            'lena.vogel@example.at;Lena;Vogel;"Vogel; Fink OG";Wien',
        ).encode(),
        "ragged.csv": rows(
            HEADER,
            "amy.adams@example.com,Amy,Adams,Adams Inc,Boston",
            "bob.brown@example.com,Bob,Brown",  # line 3: 3 fields
            "cara.cole@example.com,Cara,Cole,Cole LLC,Denver,,",  # trailing empty cells: fine
            "dan.diaz@example.com,Dan,Diaz,Diaz SA,Madrid,extra,cells",  # line 5: 7 fields
            "eve.evans@example.com,Eve,Evans,Evans plc,Leeds",
        ).encode(),
        "nul_bytes.csv": rows(
            HEADER,
            "finn.fox@example.ie,Finn,Fox,Fox Ltd,Cork",
            "gina.gray@example.it,Gi\x00na,Gray,Gray Srl,Milano",  # line 3: a NUL byte
            "hugo.hart@example.be,Hugo,Hart,Hart BV,Gent",
            "ivy.ilic@example.rs,Ivy,Ilic,\x00\x00,Beograd",  # line 5: NUL bytes
            "jon.jansen@example.nl,Jon,Jansen,Jansen BV,Utrecht",
        ).encode(),
        "long_field.csv": rows(
            "Email,First Name,Last Name,Company,City,Notes",
            "kim.kerr@example.com,Kim,Kerr,Kerr Co,Austin,short note",
            f'liam.lund@example.se,Liam,Lund,Lund AB,Malmö,"{long_value}"',  # line 3: 10k chars
            "mia.moss@example.com,Mia,Moss,Moss Ltd,Bristol,",
        ).encode(),
        "invalid_emails.csv": rows(
            HEADER,
            "nina.nagy@example.hu,Nina,Nagy,Nagy Kft,Budapest",
            ",Omar,Odeh,Odeh LLC,Amman",  # line 3: missing
            "not-an-email,Pia,Park,Park Inc,Seoul",  # line 4
            "quinn@localhost,Quinn,Quist,Quist AB,Lund",  # line 5: no dot in the domain
            "rosa rossi@example.it,Rosa,Rossi,Rossi Srl,Roma",  # line 6: a space
            "sam@@example.com,Sam,Stone,Stone Ltd,York",  # line 7: two @
            "  Tara.Tran@Example.COM  ,Tara,Tran,Tran Co,Hanoi",  # valid once trimmed
            "   ,Uma,Ueda,Ueda KK,Osaka",  # line 9: blank
        ).encode(),
        "duplicate_emails.csv": rows(
            HEADER,
            "vera.voss@example.de,Vera,Voss,Voss AG,Bonn",  # line 2: superseded by line 5
            "walt.wu@example.com,Walt,Wu,Wu Inc,Austin",
            "xena.xu@example.cn,Xena,Xu,Xu Ltd,Wuhan",  # line 4: superseded by line 6
            "VERA.VOSS@example.de,Vera,Voss,Voss AG (new),Bonn",  # line 5: superseded by line 7
            " xena.xu@example.cn ,Xena,Xu,Xu Ltd (new),Wuhan",
            "vera.voss@EXAMPLE.de,Vera,Voss-Vogt,Voss AG,Köln",  # the last Vera wins
            "yuri.yan@example.ru,Yuri,Yan,Yan OOO,Kazan",
        ).encode(),
        "binary.csv": png(),
        "bad_spec.toml": (
            b"# A spec with wrong types: `crm-etl run sample_data/bad/bad_spec.toml` exits 2.\n"
            b"[pipeline]\n"
            b'name = "bad_spec"\n'
            b'kind = "import"\n'
            b"\n"
            b"[import]\n"
            b'input = "sample_data/contacts_clean.csv"\n'
            b'duplicates = ["last"]\n'
            b"\n"
            b"[target]\n"
            b'crm = "salesmanago"\n'
            b'base_url = "${SALESMANAGO_BASE_URL:-https://app3.salesmanago.com/api}"\n'
            b'client_id = "${SALESMANAGO_CLIENT_ID}"\n'
            b'api_key = "${SALESMANAGO_API_KEY}"\n'
            b'api_secret = "${SALESMANAGO_API_SECRET}"\n'
            b'owner = "${SALESMANAGO_OWNER}"\n'
            b"\n"
            b"[target.pacing]\n"
            b'rate = "fast"\n'
            b"\n"
            b"[destination]\n"
            b'path = "runs/bad_spec"\n'
        ),
    }


def main() -> None:
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
