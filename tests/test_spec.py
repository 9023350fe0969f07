"""Pipeline specs: the shipped files load, and every mistake is a readable, located SpecError."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from etl.clients.config import Pacing, RetryPolicy, SalesManagoConfig, SalesNexusConfig, Timeouts
from etl.pipeline.spec import (
    PacingSection,
    PipelineSpec,
    SalesManagoConnection,
    SalesNexusConnection,
    SpecError,
    load_spec,
    parse_spec,
    resolve,
)

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
ORIGIN = "pipelines/x.toml"
SECRET = "s3cr3t-value-that-must-not-leak"

SALESMANAGO_ENV = {
    "SALESMANAGO_CLIENT_ID": "client-1",
    "SALESMANAGO_API_KEY": SECRET,
    "SALESMANAGO_API_SECRET": SECRET + "-2",
    "SALESMANAGO_OWNER": "owner@example.com",
}
SALESNEXUS_ENV = {"SALESNEXUS_EMAIL": "me@example.com", "SALESNEXUS_PASSWORD": SECRET}

BASE = """\
[pipeline]
name = "x"
kind = "export"

[source]
crm = "salesmanago"
client_id = "${SALESMANAGO_CLIENT_ID}"
api_key = "${SALESMANAGO_API_KEY}"
api_secret = "${SALESMANAGO_API_SECRET}"
owner = "${SALESMANAGO_OWNER}"

[source.pacing]
rate = 5.0

[export]
tables = ["contacts", "activities", "sales"]
page_size = 1000

[destination]
format = "parquet"
path = "exports/x"
"""

NEXUS = """\
[pipeline]
name = "x"
kind = "export"

[source]
crm = "salesnexus"
{credentials}

[export]
tables = ["contacts"]

[destination]
path = "exports/x"
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, origin=ORIGIN)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def edited(old: str, new: str, text: str = BASE) -> str:
    assert old in text
    return text.replace(old, new)


# --- shipped specs -------------------------------------------------------------------------------


def test_shipped_salesmanago_spec_loads_and_resolves() -> None:
    spec = load_spec(PIPELINES / "nightly_export_salesmanago.toml")

    assert spec.name == "nightly_export_salesmanago"
    assert spec.kind == "export"
    assert isinstance(spec.source, SalesManagoConnection)
    assert spec.target is None
    assert spec.export is not None and spec.destination is not None
    assert spec.export.tables == ("contacts", "activities", "sales")
    assert (spec.export.page_size, spec.export.prefetch_pages) == (1000, 4)
    assert (spec.destination.format, spec.destination.path) == ("parquet", "exports/salesmanago")
    assert spec.destination.resolved_path(Path("/srv")) == Path("/srv/exports/salesmanago")

    assert spec.source.client_config(SALESMANAGO_ENV) == SalesManagoConfig(
        client_id="client-1",
        api_key=SecretStr(SECRET),
        api_secret=SecretStr(SECRET + "-2"),
        owner="owner@example.com",
        base_url="https://app3.salesmanago.com/api",
        pacing=Pacing(rate=5.0, burst=1, max_in_flight=8),
        retry=RetryPolicy(max_attempts=8, base_delay=0.25, max_delay=30.0, max_retry_after=120.0),
        timeouts=Timeouts(),
    )
    custom = {**SALESMANAGO_ENV, "SALESMANAGO_BASE_URL": "https://www.salesmanago.com/api"}
    assert spec.source.client_config(custom).base_url == "https://www.salesmanago.com/api"


def test_shipped_salesnexus_spec_loads_and_resolves() -> None:
    spec = load_spec(PIPELINES / "nightly_export_salesnexus.toml")

    assert spec.name == "nightly_export_salesnexus"
    assert isinstance(spec.source, SalesNexusConnection)
    assert spec.destination is not None
    assert (spec.destination.format, spec.destination.path) == ("parquet", "exports/salesnexus")

    assert spec.source.client_config(SALESNEXUS_ENV) == SalesNexusConfig(
        email="me@example.com",
        password=SecretStr(SECRET),
        token=None,
        base_url="https://logon.salesnexus.com/api/call-v1",
        calls_per_request=25,
        pacing=Pacing(rate=5.0, burst=1, max_in_flight=8),
        retry=RetryPolicy(),
        timeouts=Timeouts(),
    )


# --- environment references ----------------------------------------------------------------------


def test_missing_env_var_names_the_variable_file_and_location() -> None:
    spec = load_spec(PIPELINES / "nightly_export_salesmanago.toml")
    assert spec.source is not None
    env = {k: v for k, v in SALESMANAGO_ENV.items() if k != "SALESMANAGO_API_KEY"}

    with pytest.raises(SpecError) as caught:
        spec.source.client_config(env)

    origin = str(PIPELINES / "nightly_export_salesmanago.toml")
    assert str(caught.value) == (
        f"{origin}: [source] api_key: environment variable SALESMANAGO_API_KEY is not set"
    )


def test_resolve_expands_references_and_defaults() -> None:
    env = {"HOST": "app1", "EMPTY": ""}
    where = f"{ORIGIN}: [source] base_url"

    assert resolve("https://${HOST}.example.com/api", env, where=where) == (
        "https://app1.example.com/api"
    )
    assert resolve("${MISSING:-https://app3.example.com/api}", env, where=where) == (
        "https://app3.example.com/api"
    )
    assert resolve("${HOST:-ignored}", env, where=where) == "app1"
    assert resolve("${EMPTY:-fallback}", env, where=where) == "fallback"
    assert resolve("${MISSING:-}", env, where=where) == ""
    assert resolve("pa$$word $${HOST}", env, where=where) == "pa$$word ${HOST}"

    with pytest.raises(SpecError) as caught:
        resolve("${EMPTY}", env, where=where)
    assert str(caught.value) == f"{where}: environment variable EMPTY is empty"
    with pytest.raises(SpecError) as caught:
        resolve("${HOST", env, where=where)
    assert str(caught.value) == (
        f"{where}: malformed variable reference "
        "(use ${NAME} or ${NAME:-default}; write $${ for a literal ${)"
    )


def test_default_base_url_in_a_spec() -> None:
    text = edited(
        'crm = "salesmanago"\n',
        'crm = "salesmanago"\nbase_url = "${SM_URL:-https://app2.salesmanago.com/api}"\n',
    )
    source = parse_spec(text, origin=ORIGIN).source
    assert source is not None

    assert source.client_config(SALESMANAGO_ENV).base_url == "https://app2.salesmanago.com/api"
    env = {**SALESMANAGO_ENV, "SM_URL": "http://127.0.0.1:8080/api"}
    assert source.client_config(env).base_url == "http://127.0.0.1:8080/api"


def test_resolved_base_url_must_be_http() -> None:
    text = edited('crm = "salesmanago"\n', 'crm = "salesmanago"\nbase_url = "${SM_URL}"\n')
    source = parse_spec(text, origin=ORIGIN).source
    assert source is not None

    with pytest.raises(SpecError) as caught:
        source.client_config({**SALESMANAGO_ENV, "SM_URL": "app3.salesmanago.com"})
    assert str(caught.value) == (
        f"{ORIGIN}: [source] base_url: must be an http:// or https:// URL "
        "(got 'app3.salesmanago.com')"
    )


def test_malformed_reference_is_caught_at_load_time() -> None:
    text = edited('"${SALESMANAGO_OWNER}"', '"${SALESMANAGO OWNER}"')
    assert errors_of(text) == [
        f"{ORIGIN}: [source] owner: malformed variable reference "
        "(use ${NAME} or ${NAME:-default}; write $${ for a literal ${)"
    ]


# --- validation errors ---------------------------------------------------------------------------


def test_unknown_top_level_keys_and_sections() -> None:
    text = "retries = 3\n" + edited("[export]", "[exprot]") + "\n[import]\nfile = 'a.csv'\n"
    assert errors_of(text) == [
        f"{ORIGIN}: [import] missing required key 'input'",
        f"{ORIGIN}: [import] unknown key 'file'",
        f"{ORIGIN}: unknown top-level key 'retries'",
        f"{ORIGIN}: unknown section [exprot]",
    ]


def test_unknown_nested_keys() -> None:
    text = edited("api_secret =", "api_scret =")
    assert errors_of(text) == [
        f"{ORIGIN}: [source] missing required key 'api_secret'",
        f"{ORIGIN}: [source] unknown key 'api_scret'",
    ]
    text = edited("rate = 5.0", "rate = 5.0\nburts = 2")
    assert errors_of(text) == [f"{ORIGIN}: [source.pacing] unknown key 'burts'"]


def test_unknown_table() -> None:
    text = edited('tables = ["contacts", "activities", "sales"]', 'tables = ["contacts", "deals"]')
    assert errors_of(text) == [
        f"{ORIGIN}: [export] tables: unknown table 'deals' "
        "(expected one of contacts, activities, sales)"
    ]
    text = edited('tables = ["contacts", "activities", "sales"]', "tables = []")
    assert errors_of(text) == [
        f"{ORIGIN}: [export] tables: must name at least one table "
        "(one of contacts, activities, sales)"
    ]


def test_wrong_types_and_ranges_one_line_each() -> None:
    text = BASE
    text = edited("page_size = 1000", 'page_size = "big"', text)
    text = edited("rate = 5.0", "rate = -1", text)
    text = edited('format = "parquet"', 'format = "xlsx"', text)
    text = edited('kind = "export"', 'kind = "export"\ndescription = 7', text)
    assert errors_of(text) == [
        f"{ORIGIN}: [pipeline] description: must be a string (got 7)",
        f"{ORIGIN}: [source.pacing] rate: must be greater than 0 (got -1)",
        f"{ORIGIN}: [export] page_size: must be an integer (got 'big')",
        f"{ORIGIN}: [destination] format: must be one of parquet, csv (got 'xlsx')",
    ]


def test_range_limits() -> None:
    assert errors_of(edited("page_size = 1000", "page_size = 1001")) == [
        f"{ORIGIN}: [export] page_size: must be at most 1000 (got 1001)"
    ]
    assert errors_of(edited("rate = 5.0", "rate = 5.0\nmax_in_flight = 1.5")) == [
        f"{ORIGIN}: [source.pacing] max_in_flight: must be an integer (got 1.5)"
    ]
    text = edited("[source.pacing]\nrate = 5.0", "pacing = 3\n[source.retry]\nmax_delay = 0.1")
    assert errors_of(text) == [
        f"{ORIGIN}: [source] pacing: must be a table (got 3)",
        f"{ORIGIN}: [source.retry] max_delay: must be at least base_delay (0.25) (got 0.1)",
    ]


def test_crm_discriminator_errors() -> None:
    assert errors_of(edited('crm = "salesmanago"', 'crm = "hubspot"')) == [
        f"{ORIGIN}: [source] crm: unknown CRM 'hubspot' (expected one of salesmanago, salesnexus)"
    ]
    assert errors_of(edited('crm = "salesmanago"\n', "")) == [
        f"{ORIGIN}: [source] missing required key 'crm' (expected one of salesmanago, salesnexus)"
    ]


def test_sections_required_by_kind() -> None:
    text = edited('[destination]\nformat = "parquet"\npath = "exports/x"\n', "")
    text += '\n[target]\ncrm = "salesnexus"\ntoken = "${T}"\n'
    assert errors_of(text) == [
        f'{ORIGIN}: missing section [destination] (required when kind = "export")',
        f'{ORIGIN}: unexpected section [target] (not used when kind = "export")',
    ]
    assert errors_of(edited('kind = "export"', 'kind = "migrate"')) == [
        f'{ORIGIN}: missing section [target] (required when kind = "migrate")',
        f'{ORIGIN}: unexpected section [export] (not used when kind = "migrate")',
    ]
    assert errors_of(edited('kind = "export"', 'kind = "sync"')) == [
        f"{ORIGIN}: [pipeline] kind: must be one of export, import, migrate (got 'sync')"
    ]
    assert errors_of(edited("[pipeline]\nname", "[pipeline]\nlabel")) == [
        f"{ORIGIN}: [pipeline] missing required key 'name'",
        f"{ORIGIN}: [pipeline] unknown key 'label'",
    ]


def test_toml_syntax_error_names_line_and_column() -> None:
    assert errors_of(edited("page_size = 1000", "page_size 1000")) == [
        f"{ORIGIN}: line 17, column 11: invalid TOML: Expected '=' after a key in a key/value pair"
    ]


def test_salesnexus_credentials() -> None:
    assert errors_of(NEXUS.format(credentials='email = "${E}"')) == [
        f"{ORIGIN}: [source] missing required key 'password' (email is set)"
    ]
    assert errors_of(NEXUS.format(credentials="calls_per_request = 25")) == [
        f"{ORIGIN}: [source] SalesNexus needs either token, or email and password"
    ]
    assert errors_of(NEXUS.format(credentials='token = "${T}"\ncalls_per_request = 26')) == [
        f"{ORIGIN}: [source] calls_per_request: must be at most 25 (got 26)"
    ]

    # A token alone is enough; a reference that resolves to "" counts as unset.
    text = NEXUS.format(credentials='token = "${T}"\nemail = "${E:-}"\npassword = "${P:-}"')
    source = parse_spec(text, origin=ORIGIN).source
    assert isinstance(source, SalesNexusConnection)
    config = source.client_config({"T": SECRET})
    assert (config.token, config.email, config.password) == (SecretStr(SECRET), None, None)
    with pytest.raises(SpecError) as caught:
        source.client_config({"T": ""})
    assert str(caught.value) == (f"{ORIGIN}: [source] token: environment variable T is empty")
    text = NEXUS.format(credentials='token = "${T:-}"')
    source = parse_spec(text, origin=ORIGIN).source
    assert source is not None
    with pytest.raises(SpecError) as caught:
        source.client_config({})
    assert str(caught.value) == (
        f"{ORIGIN}: [source] SalesNexus needs either token, or email and password "
        "(after resolving environment variables)"
    )


def test_load_spec_labels_errors_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(edited("page_size = 1000", "page_size = 0"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: [export] page_size: must be at least 1 (got 0)"

    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "absent.toml")
    assert str(caught.value) == (
        f"{tmp_path / 'absent.toml'}: cannot read the file (No such file or directory)"
    )


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_never_appear_in_reprs_or_errors() -> None:
    spec = load_spec(PIPELINES / "nightly_export_salesmanago.toml")
    assert spec.source is not None
    config = spec.source.client_config(SALESMANAGO_ENV)
    assert config.api_key.get_secret_value() == SECRET
    assert SECRET not in repr(config)

    # Literal sandbox credentials put in by the runner stay out of the spec's repr too.
    local = spec.source.with_overrides(api_key=SECRET, api_secret=SECRET)
    local_spec = spec.model_copy(update={"source": local})
    for text in (repr(local), str(local), repr(local_spec), str(local_spec)):
        assert SECRET not in text
        assert "api_key='**********'" in text

    nexus = load_spec(PIPELINES / "nightly_export_salesnexus.toml")
    assert nexus.source is not None
    assert SECRET not in repr(nexus.source.client_config(SALESNEXUS_ENV))
    assert SECRET not in repr(nexus.source.with_overrides(password=SECRET))

    # A literal secret of the wrong type is reported without its value.
    assert errors_of(edited('"${SALESMANAGO_API_KEY}"', "12345")) == [
        f"{ORIGIN}: [source] api_key: must be a string"
    ]


# --- overrides -----------------------------------------------------------------------------------


def test_with_overrides_returns_a_validated_copy() -> None:
    spec = load_spec(PIPELINES / "nightly_export_salesnexus.toml")
    source = spec.source
    assert isinstance(source, SalesNexusConnection)

    local = source.with_overrides(
        base_url="http://127.0.0.1:4321/api/call-v1",
        email="sandbox@example.com",
        password="sandbox",
        pacing=PacingSection(rate=None, max_in_flight=4),
    )
    assert source.base_url == "${SALESNEXUS_BASE_URL:-https://logon.salesnexus.com/api/call-v1}"
    config = local.client_config({})
    assert config.base_url == "http://127.0.0.1:4321/api/call-v1"
    assert (config.email, config.password) == ("sandbox@example.com", SecretStr("sandbox"))
    assert config.pacing == Pacing(rate=None, burst=1, max_in_flight=4)

    with pytest.raises(SpecError) as caught:
        source.with_overrides(base_url="127.0.0.1:4321", calls_per_request=0, api_key="k")
    origin = str(PIPELINES / "nightly_export_salesnexus.toml")
    assert caught.value.problems == [
        f"{origin}: [source] base_url: must be an http:// or https:// URL (got '127.0.0.1:4321')",
        f"{origin}: [source] calls_per_request: must be at least 1 (got 0)",
        f"{origin}: [source] unknown key 'api_key'",
    ]


def test_spec_is_immutable() -> None:
    spec = load_spec(PIPELINES / "nightly_export_salesmanago.toml")
    assert isinstance(spec, PipelineSpec)
    with pytest.raises(ValueError):
        spec.pipeline.name = "other"  # type: ignore[misc]
