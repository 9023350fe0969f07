"""Pipeline specs: TOML files in ``pipelines/`` validated into frozen pydantic models.

A spec keeps credentials as written, usually ``${VAR}`` references; they are resolved against the
environment only when a run asks for a client config (:meth:`SalesManagoConnection.client_config`).
Every problem surfaces as a :class:`SpecError` whose lines name the file and the location, never as
a pydantic dump (which would echo input values, secrets included).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from etl.clients.config import (
    SALESMANAGO_DEFAULT_URL,
    SALESNEXUS_DEFAULT_URL,
    Pacing,
    RetryPolicy,
    SalesManagoConfig,
    SalesNexusConfig,
    Timeouts,
)
from etl.pipeline.snapshots import IncrementalSettings
from etl.transform.contact_input import CANONICAL_COLUMNS

TableName = Literal["contacts", "activities", "sales"]
TABLES: tuple[TableName, ...] = ("contacts", "activities", "sales")
CRMS = ("salesmanago", "salesnexus")
CONNECTION_SECTIONS = ("source", "target")
# Which sections each kind of pipeline needs (and which connections it may not have).
REQUIRED_SECTIONS = {
    "export": ("source", "export", "destination"),
    "import": ("target", "import", "destination"),
    "migrate": ("source", "target", "destination"),
}
FORBIDDEN_SECTIONS = {
    "export": ("target", "import", "migrate"),
    "import": ("source", "export", "migrate"),
    "migrate": ("export", "import"),
}
SECRET_FIELDS = frozenset({"api_key", "api_secret", "password", "token"})
_MASK = "**********"

_DEFAULT_PACING = Pacing()
_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_TIMEOUTS = Timeouts()
_DEFAULT_INCREMENTAL = IncrementalSettings()


class SpecError(Exception):
    """A spec that cannot be read, parsed, validated or resolved; one line per problem."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# --- ${VAR} references -------------------------------------------------------------------------

# `$${` is a literal `${`; a `${` that does not open a well-formed reference is an error.
_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:-[^}]*)?\}|\$\{",
)
_MALFORMED = (
    "malformed variable reference (use ${NAME} or ${NAME:-default}; write $${ for a literal ${)"
)


class _MalformedReferenceError(ValueError):
    pass


def _substitute(value: str, replace: Callable[[str, str | None], str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group("name")
        if name is None:
            raise _MalformedReferenceError(_MALFORMED)
        default = match.group("default")
        return replace(name, None if default is None else default[2:])

    return _REFERENCE.sub(one, value)


def _check_references(value: str) -> str:
    """Validate the reference syntax only (load time: the environment is not consulted)."""
    _substitute(value, lambda _name, _default: "")
    return value


def resolve(value: str, env: Mapping[str, str], *, where: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (the default also applies to an empty variable).

    ``where`` prefixes every error, e.g. ``pipelines/x.toml: [source] api_key``. Errors name the
    variable, never its value.
    """

    def lookup(name: str, default: str | None) -> str:
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        if found is None:
            raise SpecError(f"{where}: environment variable {name} is not set")
        raise SpecError(f"{where}: environment variable {name} is empty")

    try:
        return _substitute(value, lookup)
    except _MalformedReferenceError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _check_url(value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL (got {_show(value)})")


# --- models --------------------------------------------------------------------------------------


class _Section(BaseModel):
    # Strict: TOML is typed, so "5" is not silently an int (ints are still accepted as floats).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PipelineSection(_Section):
    name: str
    kind: Literal["export", "import", "migrate"]
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, '_', '-' "
                f"and '.' (got {_show(value)})"
            )
        return value


class PacingSection(_Section):
    """Account-wide pacing; see :class:`etl.clients.config.Pacing`. ``rate=None`` (code only)
    switches the limiter off."""

    rate: Annotated[float, Field(gt=0)] | None = _DEFAULT_PACING.rate
    burst: int = Field(_DEFAULT_PACING.burst, ge=1)
    max_in_flight: int = Field(_DEFAULT_PACING.max_in_flight, ge=1)

    def to_pacing(self) -> Pacing:
        return Pacing(rate=self.rate, burst=self.burst, max_in_flight=self.max_in_flight)


class RetrySection(_Section):
    max_attempts: int = Field(_DEFAULT_RETRY.max_attempts, ge=1)
    base_delay: float = Field(_DEFAULT_RETRY.base_delay, ge=0)
    max_delay: float = Field(_DEFAULT_RETRY.max_delay, ge=0)
    max_retry_after: float = Field(_DEFAULT_RETRY.max_retry_after, ge=0)

    @model_validator(mode="after")
    def _delays_ordered(self) -> Self:
        if self.max_delay < self.base_delay:
            raise ValueError(
                f"max_delay: must be at least base_delay ({_show(self.base_delay)}) "
                f"(got {_show(self.max_delay)})"
            )
        return self

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            max_retry_after=self.max_retry_after,
        )


class TimeoutsSection(_Section):
    total: float = Field(_DEFAULT_TIMEOUTS.total, gt=0)
    connect: float = Field(_DEFAULT_TIMEOUTS.connect, gt=0)

    def to_timeouts(self) -> Timeouts:
        return Timeouts(total=self.total, connect=self.connect)


class _Connection(_Section):
    """Fields shared by every CRM connection. String fields may hold ``${VAR}`` references."""

    base_url: str
    pacing: PacingSection = PacingSection()
    retry: RetrySection = RetrySection()
    timeouts: TimeoutsSection = TimeoutsSection()

    _origin: str = PrivateAttr("<spec>")
    _section: str = PrivateAttr("source")

    @field_validator("*")
    @classmethod
    def _references_well_formed(cls, value: Any) -> Any:
        if isinstance(value, str):
            _check_references(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _literal_url(cls, value: str) -> str:
        if "${" not in value:
            _check_url(value)
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # `crm` first (it is declared after the shared fields); secret values masked.
        args = sorted(super().__repr_args__(), key=lambda arg: arg[0] != "crm")
        for name, value in args:
            yield name, _MASK if name in SECRET_FIELDS and value is not None else value

    @property
    def location(self) -> str:
        """``pipelines/x.toml: [source]``: where this connection was written."""
        return f"{self._origin}: [{self._section}]"

    def _bind(self, origin: str, section: str) -> Self:
        self._origin = origin
        self._section = section
        return self

    def with_overrides(self, **values: Any) -> Self:
        """A validated copy with some fields replaced (e.g. a sandbox's URL and credentials)."""
        data: dict[str, Any] = self.model_dump()
        for key, value in values.items():
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        try:
            copy = type(self).model_validate(data)
        except ValidationError as exc:
            lines = _readable_errors(exc, self._origin, {self._section: data}, (self._section,))
            raise SpecError(lines) from None
        return copy._bind(self._origin, self._section)

    def _resolve(self, field: str, env: Mapping[str, str]) -> str | None:
        value = getattr(self, field)
        if value is None:
            return None
        return resolve(value, env, where=f"{self.location} {field}")

    def _resolve_url(self, env: Mapping[str, str]) -> str:
        url = self._resolve("base_url", env) or ""
        try:
            _check_url(url)
        except ValueError as exc:
            raise SpecError(f"{self.location} base_url: {exc}") from None
        return url


class SalesManagoConnection(_Connection):
    crm: Literal["salesmanago"]
    base_url: str = SALESMANAGO_DEFAULT_URL
    client_id: str
    api_key: str
    api_secret: str
    owner: str

    def client_config(self, env: Mapping[str, str]) -> SalesManagoConfig:
        """Resolve every reference against ``env``; secrets come back as ``SecretStr``."""
        return SalesManagoConfig(
            client_id=self._resolve("client_id", env) or "",
            api_key=SecretStr(self._resolve("api_key", env) or ""),
            api_secret=SecretStr(self._resolve("api_secret", env) or ""),
            owner=self._resolve("owner", env) or "",
            base_url=self._resolve_url(env),
            pacing=self.pacing.to_pacing(),
            retry=self.retry.to_policy(),
            timeouts=self.timeouts.to_timeouts(),
        )


class SalesNexusConnection(_Connection):
    """Either ``token`` (permanent) or ``email`` and ``password`` (temporary login tokens)."""

    crm: Literal["salesnexus"]
    base_url: str = SALESNEXUS_DEFAULT_URL
    email: str | None = None
    password: str | None = None
    token: str | None = None
    calls_per_request: int = Field(25, ge=1, le=25)

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.token is None and (self.email is None or self.password is None):
            if self.email is not None:
                raise ValueError("missing required key 'password' (email is set)")
            if self.password is not None:
                raise ValueError("missing required key 'email' (password is set)")
            raise ValueError("SalesNexus needs either token, or email and password")
        return self

    def client_config(self, env: Mapping[str, str]) -> SalesNexusConfig:
        """Resolve every reference against ``env``; a reference that resolves to "" counts as
        unset, so one spec can carry ``token = "${SALESNEXUS_TOKEN:-}"`` beside email/password."""
        email = self._resolve("email", env) or None
        password = self._resolve("password", env) or None
        token = self._resolve("token", env) or None
        if token is None and (email is None or password is None):
            raise SpecError(
                f"{self.location} SalesNexus needs either token, or email and password "
                "(after resolving environment variables)"
            )
        return SalesNexusConfig(
            email=email,
            password=SecretStr(password) if password is not None else None,
            token=SecretStr(token) if token is not None else None,
            base_url=self._resolve_url(env),
            calls_per_request=self.calls_per_request,
            pacing=self.pacing.to_pacing(),
            retry=self.retry.to_policy(),
            timeouts=self.timeouts.to_timeouts(),
        )


Connection = Annotated[SalesManagoConnection | SalesNexusConnection, Field(discriminator="crm")]


def _check_tables(value: Any) -> Any:
    """Table lists: known names, at least one, none twice."""
    if not isinstance(value, list | tuple):
        return value  # the type error is reported by pydantic
    if not value:
        raise ValueError(f"must name at least one table (one of {', '.join(TABLES)})")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"entries must be strings (got {_show(item)})")
        if item not in TABLES:
            raise ValueError(
                f"unknown table {item!r} (expected one of {', '.join(TABLES)})",
            )
        if item in seen:
            raise ValueError(f"table {item!r} is listed twice")
        seen.add(item)
    return tuple(value)


INCREMENTAL_KEYS = ("lag_seconds", "window_seconds", "snapshot_every")


class ExportSection(_Section):
    """``mode = "incremental"`` exports only changes since the previous run (see the README);
    its keys (``lag_seconds``, ``window_seconds``, ``snapshot_every``) are refused otherwise."""

    tables: tuple[TableName, ...] = TABLES
    page_size: int = Field(1000, ge=1, le=1000)
    prefetch_pages: int | None = Field(None, ge=1)  # None: the CRM's default (4 or 25)
    checkpoint_pages: int = Field(10, ge=1)
    mode: Literal["full", "incremental"] = "full"
    lag_seconds: int = Field(_DEFAULT_INCREMENTAL.lag_seconds, ge=0)
    window_seconds: int = Field(_DEFAULT_INCREMENTAL.window_seconds, ge=1)
    snapshot_every: int = Field(_DEFAULT_INCREMENTAL.snapshot_every, ge=1)

    @field_validator("tables", mode="before")
    @classmethod
    def _known_tables(cls, value: Any) -> Any:
        return _check_tables(value)

    @model_validator(mode="after")
    def _incremental_keys_need_incremental_mode(self) -> Self:
        stray = [key for key in INCREMENTAL_KEYS if key in self.model_fields_set]
        if self.mode == "full" and stray:
            raise ValueError(f'{" and ".join(stray)}: only used when mode = "incremental"')
        return self

    def incremental(self) -> IncrementalSettings:
        return IncrementalSettings(
            lag_seconds=self.lag_seconds,
            window_seconds=self.window_seconds,
            snapshot_every=self.snapshot_every,
        )


CANONICAL_TARGETS = CANONICAL_COLUMNS  # what an [import.mapping] column may map to


class ImportSection(_Section):
    """A CSV import: the file, how to read its columns and how to resolve duplicates."""

    input: str = Field(min_length=1)
    mapping: dict[str, str] = Field(default_factory=dict)
    unmapped: Literal["properties", "ignore"] = "properties"
    duplicates: Literal["last", "reject"] = "last"
    default_region: str | None = None
    dayfirst: bool = True

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        # Checked here, not only when the run builds its options: a bad region is a spec error
        # (exit 2 naming the file and key), not an internal error half way into the run.
        if value is None:
            return None
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"unknown region {_show(value)} (expected a two-letter country code such as "
                "DE, PL or US)"
            )
        return region

    @field_validator("mapping")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for header, target in value.items():
            known = target in CANONICAL_TARGETS or target == "ignore"
            if not known and not (target.startswith("properties.") and len(target) > 11):
                raise ValueError(
                    f"column {header!r}: unknown target {target!r} (expected one of "
                    f"{', '.join(CANONICAL_TARGETS)}, properties.<name> or ignore)"
                )
        return value

    def resolved_input(self, cwd: Path | None = None) -> Path:
        path = Path(self.input).expanduser()
        return path if path.is_absolute() else (cwd or Path.cwd()) / path


class MigrateSection(_Section):
    tables: tuple[TableName, ...] = TABLES
    # Renames contact properties on the way: source name -> target name (e.g. a SalesNexus field).
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("tables", mode="before")
    @classmethod
    def _known_tables(cls, value: Any) -> Any:
        return _check_tables(value)


class Destination(_Section):
    format: Literal["parquet", "csv"] = "parquet"
    path: str = Field(min_length=1)

    def resolved_path(self, cwd: Path | None = None) -> Path:
        """The output directory; a relative path resolves against ``cwd`` (default: the current
        directory)."""
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (cwd or Path.cwd()) / path


class PipelineSpec(_Section):
    pipeline: PipelineSection
    source: Connection | None = None
    target: Connection | None = None
    export: ExportSection | None = None
    import_: ImportSection | None = Field(None, alias="import")
    migrate: MigrateSection | None = None
    destination: Destination | None = None

    _origin: str = PrivateAttr("<spec>")

    @property
    def origin(self) -> str:
        """The file (or label) the spec was read from; every error message starts with it."""
        return self._origin

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def kind(self) -> str:
        return self.pipeline.kind

    @model_validator(mode="after")
    def _sections_fit_kind(self) -> Self:
        kind = self.pipeline.kind
        problems = [
            f'missing section [{name}] (required when kind = "{kind}")'
            for name in REQUIRED_SECTIONS[kind]
            if self.section(name) is None
        ]
        problems += [
            f'unexpected section [{name}] (not used when kind = "{kind}")'
            for name in FORBIDDEN_SECTIONS[kind]
            if self.section(name) is not None
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def section(self, name: str) -> Any:
        """A section by its TOML name (``import`` is ``import_`` in Python)."""
        return getattr(self, "import_" if name == "import" else name)

    def _bind(self, origin: str) -> Self:
        self._origin = origin
        for section in CONNECTION_SECTIONS:
            connection = getattr(self, section)
            if connection is not None:
                connection._bind(origin, section)
        return self


# --- loading -------------------------------------------------------------------------------------


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate a spec file; errors are labelled with ``path`` as given."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{origin}: not valid UTF-8 text") from None
    except OSError as exc:
        raise SpecError(f"{origin}: cannot read the file ({exc.strerror or exc})") from None
    return parse_spec(text, origin=origin)


# tomllib (3.11) only has the position inside the message: "... (at line 3, column 5)".
_TOML_POSITION = re.compile(
    r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)"
    r"|(?P<end>end of document))\)$",
    re.DOTALL,
)


def parse_spec(text: str, *, origin: str) -> PipelineSpec:
    """Parse and validate spec text; ``origin`` labels every error line (usually the file path)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(_toml_error(str(exc), origin)) from None
    return validate_spec(data, origin=origin)


def validate_spec(data: dict[str, Any], *, origin: str) -> PipelineSpec:
    """Validate an already parsed spec (e.g. one built from command-line options)."""
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_readable_errors(exc, origin, data)) from None
    return spec._bind(origin)


def _toml_error(message: str, origin: str) -> str:
    match = _TOML_POSITION.match(message)
    if match is None:
        return f"{origin}: invalid TOML: {message}"
    text = match.group("message")
    if match.group("end"):
        return f"{origin}: end of file: invalid TOML: {text}"
    line, column = match.group("line"), match.group("col")
    return f"{origin}: line {line}, column {column}: invalid TOML: {text}"


# --- turning pydantic errors into lines -----------------------------------------------------------

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


def _readable_errors(
    exc: ValidationError, origin: str, data: Any, prefix: tuple[str, ...] = ()
) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        loc = _strip_tag((*prefix, *error["loc"]), data)
        for message in _describe(error, loc, data).splitlines():
            lines.append(f"{origin}: {message}")
    return lines


def _strip_tag(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the discriminator value pydantic inserts after ``source``/``target``."""
    if len(loc) >= 2 and loc[0] in CONNECTION_SECTIONS and loc[1] in CRMS:
        section = data.get(loc[0]) if isinstance(data, dict) else None
        if isinstance(section, dict) and section.get("crm") == loc[1]:
            return (loc[0], *loc[2:])
    return loc


def _split(loc: Sequence[Any], data: Any) -> tuple[list[str], list[Any]]:
    """Split a location into the TOML table path and the key inside that table."""
    section: list[str] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(part, str) and isinstance(node, dict) and isinstance(node.get(part), dict):
            section.append(part)
            node = node[part]
        else:
            return section, list(loc[index:])
    return section, []


def _describe(error: Any, loc: tuple[Any, ...], data: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}

    if kind in ("extra_forbidden", "missing"):
        section, _ = _split(loc[:-1], data)
        key = str(loc[-1])
        head = f"[{'.'.join(section)}] " if section else ""
        if kind == "extra_forbidden":
            if section:
                return f"{head}unknown key {key!r}"
            if isinstance(error["input"], dict):
                return f"unknown section [{key}]"
            return f"unknown top-level key {key!r}"
        return f"{head}missing required key {key!r}" if section else f"missing section [{key}]"

    section, rest = _split(loc, data)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        rest = ["crm"] if kind == "union_tag_invalid" else []
    head = f"[{'.'.join(section)}] " if section else ""
    key = _key(rest)
    secret = any(isinstance(part, str) and part in SECRET_FIELDS for part in rest)

    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    elif kind == "union_tag_invalid":
        message = f"unknown CRM {_show(ctx.get('tag'))} (expected one of {', '.join(CRMS)})"
    elif kind == "union_tag_not_found":
        message = f"missing required key 'crm' (expected one of {', '.join(CRMS)})"
    else:
        message = _constraint_message(kind, ctx, error["msg"])
        if not secret:
            message += f" (got {_show(error['input'])})"
    if not key:
        return f"{head}{message}"
    return "\n".join(f"{head}{key}: {line}" for line in message.splitlines())


def _constraint_message(kind: str, ctx: Mapping[str, Any], fallback: str) -> str:
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    if kind == "greater_than":
        return f"must be greater than {_bound(ctx['gt'])}"
    if kind == "greater_than_equal":
        return f"must be at least {_bound(ctx['ge'])}"
    if kind == "less_than":
        return f"must be less than {_bound(ctx['lt'])}"
    if kind == "less_than_equal":
        return f"must be at most {_bound(ctx['le'])}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {', '.join(options)}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return fallback[:1].lower() + fallback[1:]


def _key(parts: Sequence[Any]) -> str:
    key = ""
    for part in parts:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _bound(value: Any) -> str:
    """A constraint bound: ``gt=0`` arrives as ``0.0`` for float fields."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _show(value: Any) -> str:
    """A short TOML-flavoured rendering of an input value for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


__all__ = [
    "CRMS",
    "TABLES",
    "Connection",
    "Destination",
    "ExportSection",
    "PacingSection",
    "PipelineSection",
    "PipelineSpec",
    "RetrySection",
    "SalesManagoConnection",
    "SalesNexusConnection",
    "SpecError",
    "TableName",
    "TimeoutsSection",
    "load_spec",
    "parse_spec",
    "resolve",
]
