"""The bad-input corpus (``sample_data/bad``) gets exactly the outcome its README promises.

Each CSV is imported into a fresh SALESmanago emulator through ``run_import``; the README's
tables are parsed here and compared with the summary, ``rejects.csv`` and what the emulator holds.
A few files also go through the real CLI in a subprocess: exit code, message, no traceback.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from etl.extract.csv_input import InputFileError
from etl.pipeline.imports import ImportJob, run_import
from etl.pipeline.spec import SpecError, load_spec
from etl.sandbox import SalesManagoEmulator, SandboxConfig
from tests.support import sm_config

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "sample_data" / "bad"
README = BAD / "README.md"
CLI = [sys.executable, "-c", "from etl.cli.main import cli; cli()"]
EXIT_FOR_STATUS = {"ok": 0, "partial": 5}

# Who each loadable file puts into the CRM (email -> full name), non-ASCII letters intact.
LOADED: dict[str, dict[str, str]] = {
    "bom.csv": {
        "zoe.aberg@example.se": "Zoë Åberg",
        "lukasz.dvorak@example.cz": "Łukasz Dvořák",
        "ines.munoz@example.es": "Inés Muñoz",
    },
    "latin1.csv": {
        "jose.garcia@example.es": "José García",
        "renee.lefevre@example.fr": "Renée Lefèvre",
        "juergen.gross@example.de": "Jürgen Groß",
        "soren.norgaard@example.dk": "Søren Nørgaard",
    },
    "mixed_line_endings.csv": {
        "ana.silva@example.pt": "Ana Silva",
        "ben.okafor@example.ng": "Ben Okafor",
        "chloe.martin@example.fr": "Chloé Martin",
        "dara.kim@example.kr": "Dara Kim",
        "emil.berg@example.no": "Emil Berg",
    },
    "semicolons.csv": {
        "hans.mueller@example.de": "Hans Müller",
        "greta.schmidt@example.de": "Greta Schmidt",
        "lena.vogel@example.at": "Lena Vogel",
    },
    "ragged.csv": {
        "amy.adams@example.com": "Amy Adams",
        "cara.cole@example.com": "Cara Cole",
        "eve.evans@example.com": "Eve Evans",
    },
    "nul_bytes.csv": {
        "finn.fox@example.ie": "Finn Fox",
        "hugo.hart@example.be": "Hugo Hart",
        "jon.jansen@example.nl": "Jon Jansen",
    },
    "long_field.csv": {"kim.kerr@example.com": "Kim Kerr", "mia.moss@example.com": "Mia Moss"},
    "invalid_emails.csv": {
        "nina.nagy@example.hu": "Nina Nagy",
        "tara.tran@example.com": "Tara Tran",
    },
    "duplicate_emails.csv": {
        "vera.voss@example.de": "Vera Voss-Vogt",  # the last row wins
        "walt.wu@example.com": "Walt Wu",
        "xena.xu@example.cn": "Xena Xu",
        "yuri.yan@example.ru": "Yuri Yan",
    },
}
COMPANIES = {
    "semicolons.csv": {
        "hans.mueller@example.de": "Müller, Schmidt & Co. KG",
        "lena.vogel@example.at": "Vogel; Fink OG",
    },
    "mixed_line_endings.csv": {"dara.kim@example.kr": "Kim, Lee & Park"},
    "duplicate_emails.csv": {"xena.xu@example.cn": "Xu Ltd (new)"},
}


@dataclass(frozen=True)
class Expected:
    exit: int
    counts: tuple[int, int, int] | None  # loaded, rejected, duplicates
    message: str | None


def markdown_table(heading: str) -> list[list[str]]:
    """The rows of the first table under ``## heading`` in the README (cells unescaped)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {heading}")
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows.append([c.strip("`") if c.count("`") == 2 else c for c in cells])
        elif rows:
            break
    header, _separator, *body = rows
    assert _separator[0].startswith("---"), header
    return body


def outcomes() -> dict[str, Expected]:
    table: dict[str, Expected] = {}
    for file, _what, code, loaded, rejected, duplicates, message in markdown_table("Outcomes"):
        counts = None if loaded == "-" else (int(loaded), int(rejected), int(duplicates))
        table[file] = Expected(int(code), counts, None if message == "-" else message)
    return table


def reject_rows() -> dict[str, list[tuple[int, str, str]]]:
    rows: dict[str, list[tuple[int, str, str]]] = {}
    for file, line, stage, reason in markdown_table("Rejected and duplicate rows"):
        rows.setdefault(file, []).append((int(line), stage, reason))
    return rows


EXPECTED = outcomes()
CSV_FILES = sorted(name for name in EXPECTED if name.endswith(".csv"))


def test_the_readme_covers_every_file_and_the_generator_reproduces_them() -> None:
    spec = importlib.util.spec_from_file_location("bad_corpus", BAD / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    corpus: dict[str, bytes] = module.corpus()
    on_disk = {p.name for p in BAD.iterdir() if p.suffix in (".csv", ".toml")}
    assert set(corpus) == on_disk == set(EXPECTED)
    for name, data in corpus.items():
        assert (BAD / name).read_bytes() == data, name
    assert len((BAD / "long_field.csv").read_text().splitlines()[2]) > 10_000
    assert (BAD / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (BAD / "binary.csv").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UnicodeDecodeError):
        (BAD / "latin1.csv").read_bytes().decode("utf-8")


@pytest.mark.parametrize("name", CSV_FILES)
async def test_each_bad_file_gets_what_the_readme_says(name: str, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    path = BAD / name
    async with SalesManagoEmulator(SandboxConfig(contacts=0)) as sm:
        job = ImportJob(f"bad-{name}", path, "salesmanago", sm_config(sm), tmp_path)
        if expected.counts is None:
            with pytest.raises(InputFileError) as caught:
                await run_import(job)
            assert str(caught.value) == f"{path}: {expected.message}"
            assert expected.exit == 2
            assert sm.stats.requests == 0  # nothing was sent
            return
        summary = await run_import(job)
        stored = {c["email"]: c for c in sm.store.contacts.values()}

    d = summary.details
    assert (d["loaded"], d["rejected"], d["duplicates"]) == expected.counts
    assert d["input"] == sum(expected.counts)
    assert EXIT_FOR_STATUS[summary.status] == expected.exit
    with (tmp_path / "rejects.csv").open(newline="", encoding="utf-8") as fh:
        rejects = [(int(r["line"]), r["stage"], r["reason"]) for r in csv.DictReader(fh)]
    assert rejects == reject_rows().get(name, [])
    assert {email: c["name"] for email, c in stored.items()} == LOADED[name]
    for email, company in COMPANIES.get(name, {}).items():
        assert stored[email]["company"] == company


def test_the_bad_spec_names_every_wrong_type() -> None:
    path = BAD / "bad_spec.toml"
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).splitlines() == [
        f"{path}: {EXPECTED['bad_spec.toml'].message}",
        f"{path}: [import] duplicates: must be one of last, reject (got an array)",
    ]


CLI_CASES = ["empty.csv", "binary.csv", "ragged.csv", "bad_spec.toml"]


def test_the_cli_exits_as_documented_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESMANAGO_", "SALESNEXUS_"))}
    running = {}
    for name in CLI_CASES:  # started together: each is mostly interpreter start-up
        path = BAD / name
        if name.endswith(".toml"):
            command = [*CLI, "run", str(path)]
        else:
            out = tmp_path / name
            command = [*CLI, "import", str(path), "--to", "salesmanago", "--sandbox"]
            command += ["--out", str(out)]
        running[name] = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    for name, proc in running.items():
        stdout, stderr = (s.decode() for s in proc.communicate(timeout=120))
        expected = EXPECTED[name]
        assert proc.returncode == expected.exit, (name, stderr[-2000:])
        assert "Traceback" not in stdout + stderr, name
        if expected.message is not None:
            assert f"Error: {BAD / name}: {expected.message}" in stderr, (name, stderr)
        if expected.counts is not None:
            loaded, rejected, duplicates = expected.counts
            total = loaded + rejected + duplicates
            summary = (
                f"input {total} = loaded {loaded} + rejected {rejected} + duplicates {duplicates}"
            )
            assert summary in stdout, (name, stdout)
