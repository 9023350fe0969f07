"""Connection settings for the CRM clients.

Secrets are held as :class:`pydantic.SecretStr`, so a config's repr, a log line or an exception that
formats it shows ``**********`` instead of the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

SALESMANAGO_DEFAULT_URL = "https://app3.salesmanago.com/api"
SALESNEXUS_DEFAULT_URL = "https://logon.salesnexus.com/api/call-v1"


@dataclass(frozen=True)
class Pacing:
    """Account-wide pacing: a proactive rate limit and a cap on requests in flight.

    ``rate`` is HTTP requests per second (``None`` switches the limiter off; a 429's
    ``Retry-After`` still pauses the account); ``burst`` is how many requests may leave back to
    back before the rate applies, at most what the account's own quota bucket absorbs. A 429
    lowers the pace below ``rate`` until the quota allows more (see :mod:`etl.clients.pacing`).
    """

    rate: float | None = 5.0
    burst: int = 1
    max_in_flight: int = 8


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures (429, 5xx, drops, bad JSON)."""

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 30.0
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class Timeouts:
    total: float = 120.0
    connect: float = 10.0


@dataclass(frozen=True)
class SalesManagoConfig:
    client_id: str
    api_key: SecretStr
    api_secret: SecretStr
    owner: str
    base_url: str = SALESMANAGO_DEFAULT_URL
    pacing: Pacing = field(default_factory=Pacing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class SalesNexusConfig:
    """Either ``email`` and ``password`` (temporary login tokens) or a permanent ``token``."""

    email: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    base_url: str = SALESNEXUS_DEFAULT_URL
    calls_per_request: int = 25
    pacing: Pacing = field(default_factory=Pacing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        if self.token is None and (self.email is None or self.password is None):
            raise ValueError("SalesNexus needs either a permanent token or an email and password")
        if not 1 <= self.calls_per_request <= 25:
            raise ValueError("calls_per_request must be between 1 and 25")


def account_name(config: SalesManagoConfig | SalesNexusConfig) -> str:
    """A name of the account a connection reaches, without secrets and without the host (the
    same account is the same account whichever server or port answers for it)."""
    if isinstance(config, SalesManagoConfig):
        return f"salesmanago client {config.client_id} owner {config.owner}"
    return f"salesnexus user {config.email}" if config.email else "salesnexus (permanent token)"
