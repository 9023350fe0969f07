"""Settings of the sandbox emulators: data sizes, quota, faults, token lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RetryAfterForm = Literal["seconds", "http-date", "mixed"]


@dataclass(frozen=True)
class QuotaConfig:
    """A token bucket per account that counts HTTP requests.

    ``rate`` is requests per second (``None``: no quota); ``burst`` is the bucket's capacity.
    ``retry_after`` picks the form of the ``Retry-After`` header on 429: integer seconds, an
    HTTP-date, or the two alternately (``mixed``).
    """

    rate: float | None = None
    burst: int = 5
    retry_after: RetryAfterForm = "mixed"


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities (0..1) of each injected fault, drawn per HTTP request (per row for rows).

    ``call_error`` is SalesNexus only: one call inside a batch fails with ``internal-error``.
    """

    server_error: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.0
    row_failure: float = 0.0
    call_error: float = 0.0
    seed: int | None = None

    @classmethod
    def uniform(cls, rate: float, *, seed: int | None = None) -> FaultConfig:
        """Every kind of fault at the same rate; slow answers stay short so tests stay fast."""
        return cls(
            server_error=rate,
            drop=rate,
            truncate=rate,
            slow=rate,
            slow_seconds=0.05,
            row_failure=rate,
            call_error=rate,
            seed=seed,
        )


@dataclass(frozen=True)
class SandboxConfig:
    seed: int = 42
    contacts: int = 200
    activities: int = 400
    sales: int = 100
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    token_ttl: float = 3600.0
    latency: float = 0.0
    field_id_offset: int = 0
    # The emulators own their process (``crm-etl sandbox``): a large store's objects may then be
    # frozen out of the cyclic GC (see ``salesmanago_store.paused_gc``). Never in a process that
    # runs anything else, such as a test run or ``--sandbox``.
    owns_process: bool = False
