"""Shared helpers: client configs aimed at in-process emulators over real loopback HTTP."""

from __future__ import annotations

from dataclasses import replace

from click.testing import CliRunner, Result
from pydantic import SecretStr

from etl.cli.main import cli
from etl.clients import Pacing, RetryPolicy, SalesManagoConfig, SalesNexusConfig
from etl.sandbox import SalesManagoEmulator, SalesNexusEmulator

# Fast retries keep fault tests quick; the budget is generous enough for 10% fault rates.
FAST_RETRY = RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.2, max_retry_after=5.0)
UNPACED = Pacing(rate=None, max_in_flight=8)


def sm_config(
    emulator: SalesManagoEmulator,
    *,
    pacing: Pacing = UNPACED,
    retry: RetryPolicy = FAST_RETRY,
    **overrides: object,
) -> SalesManagoConfig:
    creds = emulator.credentials
    config = SalesManagoConfig(
        client_id=creds.client_id,
        api_key=SecretStr(creds.api_key),
        api_secret=SecretStr(creds.api_secret),
        owner=creds.owner,
        base_url=emulator.base_url,
        pacing=pacing,
        retry=retry,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


def sn_config(
    emulator: SalesNexusEmulator,
    *,
    pacing: Pacing = UNPACED,
    retry: RetryPolicy = FAST_RETRY,
    **overrides: object,
) -> SalesNexusConfig:
    creds = emulator.credentials
    config = SalesNexusConfig(
        email=creds.email,
        password=SecretStr(creds.password),
        base_url=emulator.base_url,
        pacing=pacing,
        retry=retry,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


def upsert_entry(n: int, **contact: object) -> dict[str, object]:
    return {"contact": {"email": f"person{n}@example.org", "name": f"Person {n}", **contact}}


def invoke(runner: CliRunner, *args: str) -> Result:
    """Run ``crm-etl ARGS`` in-process; an unexpected exception fails the test."""
    return runner.invoke(cli, list(args), catch_exceptions=False)
