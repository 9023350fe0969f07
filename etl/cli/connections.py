"""Where a command's connections come from: a spec, the environment, or an in-process sandbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from etl.pipeline.spec import (
    Connection,
    PacingSection,
    SalesManagoConnection,
    SalesNexusConnection,
)
from etl.sandbox import QuotaConfig, Sandbox, SandboxConfig

CrmName = Literal["salesmanago", "salesnexus"]

# A quota per emulated account, so runs against the sandbox show pacing at work. SALESmanago has
# no batch call for tasks and events, so a migration into it costs a request per activity: the
# quota is generous enough that the demo's migrations take seconds, not minutes.
DEMO_SANDBOX = SandboxConfig(
    seed=7, contacts=500, activities=1000, sales=250, quota=QuotaConfig(rate=150.0, burst=20)
)


def connection_from_env(crm: CrmName) -> Connection:
    """A connection whose settings are read from the environment when the run starts."""
    if crm == "salesmanago":
        return SalesManagoConnection(
            crm="salesmanago",
            base_url="${SALESMANAGO_BASE_URL:-https://app3.salesmanago.com/api}",
            client_id="${SALESMANAGO_CLIENT_ID}",
            api_key="${SALESMANAGO_API_KEY}",
            api_secret="${SALESMANAGO_API_SECRET}",
            owner="${SALESMANAGO_OWNER}",
        )
    return SalesNexusConnection(
        crm="salesnexus",
        base_url="${SALESNEXUS_BASE_URL:-https://logon.salesnexus.com/api/call-v1}",
        email="${SALESNEXUS_EMAIL}",
        password="${SALESNEXUS_PASSWORD}",
    )


def point_at_sandbox(connection: Connection, sandbox: Sandbox) -> Connection:
    """The same connection (retries kept) aimed at the in-process emulator, paced at its quota."""
    quota = sandbox.config.quota
    pacing = PacingSection(rate=quota.rate, burst=1, max_in_flight=connection.pacing.max_in_flight)
    if isinstance(connection, SalesManagoConnection):
        sm = sandbox.salesmanago
        return connection.with_overrides(
            pacing=pacing,
            base_url=sm.base_url,
            client_id=sm.credentials.client_id,
            api_key=sm.credentials.api_key,
            api_secret=sm.credentials.api_secret,
            owner=sm.credentials.owner,
        )
    sn = sandbox.salesnexus
    return connection.with_overrides(
        pacing=pacing,
        base_url=sn.base_url,
        email=sn.credentials.email,
        password=sn.credentials.password,
        token=None,
    )


@contextlib.asynccontextmanager
async def optional_sandbox(
    enabled: bool, config: SandboxConfig = DEMO_SANDBOX
) -> AsyncIterator[Sandbox | None]:
    if not enabled:
        yield None
        return
    async with Sandbox(config) as sandbox:
        yield sandbox
