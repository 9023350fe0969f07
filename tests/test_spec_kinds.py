"""Import and migrate specs: their sections are checked on load, each mistake one located line."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.pipeline.spec import SpecError, load_spec

IMPORT = """\
[pipeline]
name = "import_x"
kind = "import"

[import]
input = "contacts.csv"
{import_keys}
[target]
crm = "salesmanago"
client_id = "${{SALESMANAGO_CLIENT_ID}}"
api_key = "${{SALESMANAGO_API_KEY}}"
api_secret = "${{SALESMANAGO_API_SECRET}}"
owner = "${{SALESMANAGO_OWNER}}"

[destination]
path = "runs/import_x"
{extra}"""

MIGRATE = """\
[pipeline]
name = "migrate_x"
kind = "migrate"

[source]
crm = "salesmanago"
client_id = "${{SALESMANAGO_CLIENT_ID}}"
api_key = "${{SALESMANAGO_API_KEY}}"
api_secret = "${{SALESMANAGO_API_SECRET}}"
owner = "${{SALESMANAGO_OWNER}}"

[target]
crm = "salesnexus"
email = "${{SALESNEXUS_EMAIL}}"
password = "${{SALESNEXUS_PASSWORD}}"

[migrate]
tables = {tables}

[destination]
path = "runs/migrate_x"
{extra}"""

TARGETS = (
    "email, name, first_name, last_name, phone, fax, company, street, zip_code, city, province, "
    "country, state, external_id, birthday, tags, properties.<name> or ignore"
)
REGION_HINT = "(expected a two-letter country code such as DE, PL or US)"


def import_spec(import_keys: str = "", extra: str = "") -> str:
    return IMPORT.format(import_keys=import_keys, extra=extra)


def migrate_spec(tables: str = '["contacts", "activities", "sales"]', extra: str = "") -> str:
    return MIGRATE.format(tables=tables, extra=extra)


# (spec text, the error after "<file>: ")
BAD_SPECS: dict[str, tuple[str, str]] = {
    "import, unknown mapping target": (
        import_spec('\n[import.mapping]\n"E-mail" = "e_mail"\n'),
        f"[import.mapping] column 'E-mail': unknown target 'e_mail' (expected one of {TARGETS})",
    ),
    "import, property without a name": (
        import_spec('\n[import.mapping]\n"Tier" = "properties."\n'),
        f"[import.mapping] column 'Tier': unknown target 'properties.' (expected one of {TARGETS})",
    ),
    "import, mapping target not a string": (
        import_spec('\n[import.mapping]\n"E-mail" = 1\n'),
        "[import.mapping] E-mail: must be a string (got 1)",
    ),
    "import, missing input": (
        import_spec().replace('input = "contacts.csv"\n', ""),
        "[import] missing required key 'input'",
    ),
    "import, empty input": (
        import_spec().replace('input = "contacts.csv"', 'input = ""'),
        "[import] input: must not be empty (got '')",
    ),
    "import, duplicates first": (
        import_spec('duplicates = "first"\n'),
        "[import] duplicates: must be one of last, reject (got 'first')",
    ),
    "import, unmapped drop": (
        import_spec('unmapped = "drop"\n'),
        "[import] unmapped: must be one of properties, ignore (got 'drop')",
    ),
    "import, region a country name": (
        import_spec('default_region = "Germany"\n'),
        f"[import] default_region: unknown region 'Germany' {REGION_HINT}",
    ),
    "import, region no country": (
        import_spec('default_region = "XX"\n'),
        f"[import] default_region: unknown region 'XX' {REGION_HINT}",
    ),
    "import, unknown key": (
        import_spec('delimiter = ";"\n'),
        "[import] unknown key 'delimiter'",
    ),
    "import with a source": (
        import_spec(extra='\n[source]\ncrm = "salesnexus"\ntoken = "${SALESNEXUS_TOKEN}"\n'),
        'unexpected section [source] (not used when kind = "import")',
    ),
    "import with a migrate section": (
        import_spec(extra="\n[migrate]\n"),
        'unexpected section [migrate] (not used when kind = "import")',
    ),
    "migrate, unknown table": (
        migrate_spec('["contacts", "deals"]'),
        "[migrate] tables: unknown table 'deals' (expected one of contacts, activities, sales)",
    ),
    "migrate, no table": (
        migrate_spec("[]"),
        "[migrate] tables: must name at least one table (one of contacts, activities, sales)",
    ),
    "migrate with an import section": (
        migrate_spec(extra='\n[import]\ninput = "contacts.csv"\n'),
        'unexpected section [import] (not used when kind = "migrate")',
    ),
    "migrate, property renamed to a number": (
        migrate_spec(extra='\n[migrate.properties]\n"custom.tier" = 3\n'),
        "[migrate.properties] custom.tier: must be a string (got 3)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_a_bad_import_or_migrate_spec_names_the_file_and_the_location(
    tmp_path: Path, case: str
) -> None:
    text, message = BAD_SPECS[case]
    path = tmp_path / "pipelines" / "bad.toml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == [f"{path}: {message}"]
    assert str(caught.value) == f"{path}: {message}"


def test_a_valid_import_spec_keeps_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "import.toml"
    keys = (
        'duplicates = "reject"\nunmapped = "ignore"\ndefault_region = "pl"\ndayfirst = false\n'
        '\n[import.mapping]\n"E-mail" = "email"\n"Tier" = "properties.Customer Tier"\n'
        '"Notes" = "ignore"\n'
    )
    path.write_text(import_spec(keys), encoding="utf-8")
    spec = load_spec(path)
    section = spec.import_
    assert spec.kind == "import" and section is not None
    assert (section.input, section.duplicates, section.unmapped) == (
        "contacts.csv",
        "reject",
        "ignore",
    )
    assert (section.default_region, section.dayfirst) == ("PL", False)  # upper-cased
    assert section.mapping == {
        "E-mail": "email",
        "Tier": "properties.Customer Tier",
        "Notes": "ignore",
    }
    assert section.resolved_input(tmp_path) == tmp_path / "contacts.csv"


def test_a_migrate_spec_without_a_migrate_section_moves_every_table(tmp_path: Path) -> None:
    path = tmp_path / "migrate.toml"
    path.write_text(migrate_spec().replace("[migrate]\ntables = [", "# ["), encoding="utf-8")
    spec = load_spec(path)
    assert spec.kind == "migrate"
    assert spec.migrate is None
    assert spec.source is not None and spec.source.crm == "salesmanago"
    assert spec.target is not None and spec.target.crm == "salesnexus"
