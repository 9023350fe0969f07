"""``crm-etl sandbox``: serve both CRM emulators on loopback until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import ipaddress
import json
import shlex
import signal
import sys
from typing import Any

import click

from etl.sandbox.config import FaultConfig, QuotaConfig, SandboxConfig
from etl.sandbox.server import Sandbox

PROBABILITY = click.FloatRange(0.0, 1.0)
NON_NEGATIVE = click.FloatRange(min=0.0)
PORT = click.IntRange(0, 65535)
DEFAULTS = SandboxConfig()


def _loopback_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        loopback = value == "localhost" or ipaddress.ip_address(value).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise click.BadParameter(
            f"the sandbox serves only on loopback (127.0.0.1, ::1 or localhost), not {value!r}"
        )
    return value


def build_config(
    *,
    seed: int,
    contacts: int,
    activities: int,
    sales: int,
    rate: float | None,
    burst: int,
    retry_after: str,
    fault_rate: float,
    overrides: dict[str, float | None],
    token_ttl: float,
    latency: float,
    field_id_offset: int,
) -> SandboxConfig:
    """A :class:`SandboxConfig` from the command's options; per-kind fault flags beat
    ``--fault-rate``."""
    faults = FaultConfig.uniform(fault_rate) if fault_rate > 0 else FaultConfig()
    given = {name: value for name, value in overrides.items() if value is not None}
    faults = dataclasses.replace(faults, **given)
    return SandboxConfig(
        seed=seed,
        contacts=contacts,
        activities=activities,
        sales=sales,
        quota=QuotaConfig(rate=rate, burst=burst, retry_after=retry_after),  # type: ignore[arg-type]
        faults=faults,
        token_ttl=token_ttl,
        latency=latency,
        field_id_offset=field_id_offset,
    )


def connection_info(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    """Base URLs and demo credentials of both emulators."""
    sm = sandbox.salesmanago
    sm_creds = sm.credentials
    sn = sandbox.salesnexus
    sn_creds = sn.credentials
    return {
        "salesmanago": {
            "base_url": sm.base_url,
            "client_id": sm_creds.client_id,
            "api_key": sm_creds.api_key,
            "api_secret": sm_creds.api_secret,
            "owner": sm_creds.owner,
        },
        "salesnexus": {
            "base_url": sn.base_url,
            "email": sn_creds.email,
            "password": sn_creds.password,
            "token": sn_creds.permanent_token,
        },
    }


# The environment variables a spec or command reads, per field of ``connection_info``.
ENV_NAMES = {
    "salesmanago": {
        "base_url": "SALESMANAGO_BASE_URL",
        "client_id": "SALESMANAGO_CLIENT_ID",
        "api_key": "SALESMANAGO_API_KEY",
        "api_secret": "SALESMANAGO_API_SECRET",
        "owner": "SALESMANAGO_OWNER",
    },
    "salesnexus": {
        "base_url": "SALESNEXUS_BASE_URL",
        "email": "SALESNEXUS_EMAIL",
        "password": "SALESNEXUS_PASSWORD",
        "token": "SALESNEXUS_TOKEN",
    },
}


def sandbox_environment(info: dict[str, dict[str, str]]) -> dict[str, str]:
    """``SALESMANAGO_*`` / ``SALESNEXUS_*`` variables for the sandbox ``info`` describes (the
    JSON line of ``crm-etl sandbox --json``), for the CRMs it holds."""
    return {
        var: info[crm][key]
        for crm, fields in ENV_NAMES.items()
        if crm in info
        for key, var in fields.items()
        if key in info[crm]
    }


def export_lines(info: dict[str, dict[str, str]]) -> list[str]:
    lines: list[str] = []
    for crm, title in (("salesmanago", "SALESmanago"), ("salesnexus", "SalesNexus")):
        lines.append(f"# {title} sandbox (demo credentials, not secrets)")
        lines.extend(
            f"export {var}={shlex.quote(info[crm][key])}" for key, var in ENV_NAMES[crm].items()
        )
    return lines


async def _serve(config: SandboxConfig, host: str, ports: tuple[int, int], as_json: bool) -> None:
    sandbox = Sandbox(config, host=host, salesmanago_port=ports[0], salesnexus_port=ports[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before printing: a spawner may stop us at once
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        # This process only serves: the seeded records live as long as it does, and stored
        # records hold no reference cycles, so full collections (each a walk over every record,
        # a fifth of the CPU of a bulk upsert) are made rare.
        gc.freeze()
        gc.set_threshold(700, 10, 1000)
        info = connection_info(sandbox)
        if as_json:
            click.echo(json.dumps(info, ensure_ascii=False))
        else:
            click.echo("\n".join(export_lines(info)))
            click.echo("Serving the sandbox; press Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        await stop.wait()


@click.command("sandbox", short_help="Serve both CRM emulators on 127.0.0.1.")
@click.option(
    "--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed of the fake data."
)
@click.option(
    "--contacts",
    type=click.IntRange(min=0),
    default=DEFAULTS.contacts,
    show_default=True,
    help="Contacts seeded in each CRM.",
)
@click.option(
    "--activities",
    type=click.IntRange(min=0),
    default=DEFAULTS.activities,
    show_default=True,
    help="Activities (tasks, notes, visits; SalesNexus activities) seeded.",
)
@click.option(
    "--sales",
    type=click.IntRange(min=0),
    default=DEFAULTS.sales,
    show_default=True,
    help="Sales (SALESmanago purchases; SalesNexus opportunities) seeded.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Quota in HTTP requests per second per account; over it the API answers 429 "
    "with Retry-After. Default: no quota.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Requests that may arrive back to back before --rate applies.",
)
@click.option(
    "--retry-after",
    type=click.Choice(["seconds", "http-date", "mixed"]),
    default="mixed",
    show_default=True,
    help="Form of the Retry-After header on 429 (mixed alternates the two).",
)
@click.option(
    "--fault-rate",
    type=PROBABILITY,
    default=0.0,
    show_default=True,
    help="Probability of every kind of fault at once; the flags below override it kind by kind.",
)
@click.option(
    "--server-error",
    type=PROBABILITY,
    default=None,
    help="Probability of a 5xx answer (HTML or JSON body) per HTTP request.",
)
@click.option(
    "--drop",
    type=PROBABILITY,
    default=None,
    help="Probability of a dropped connection per HTTP request.",
)
@click.option(
    "--truncate",
    type=PROBABILITY,
    default=None,
    help="Probability of a truncated (invalid) JSON body per HTTP request.",
)
@click.option(
    "--slow", type=PROBABILITY, default=None, help="Probability of a slow answer per HTTP request."
)
@click.option(
    "--slow-seconds",
    type=NON_NEGATIVE,
    default=None,
    help="Delay of a slow answer [default: 1.0, or 0.05 with --fault-rate].",
)
@click.option(
    "--row-failure",
    type=PROBABILITY,
    default=None,
    help="Probability that one row of a batch upsert / import fails.",
)
@click.option(
    "--call-error",
    type=PROBABILITY,
    default=None,
    help="Probability that one SalesNexus call in a batch fails with internal-error.",
)
@click.option(
    "--token-ttl",
    type=click.FloatRange(min=0.0, min_open=True),
    default=DEFAULTS.token_ttl,
    show_default=True,
    help="Lifetime of SalesNexus login tokens in seconds.",
)
@click.option(
    "--latency",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Added delay in seconds before every answer.",
)
@click.option(
    "--field-id-offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Shift every SalesNexus field id (proves nothing hard-codes them).",
)
@click.option(
    "--salesmanago-port",
    type=PORT,
    default=0,
    show_default=True,
    help="Port of the SALESmanago emulator (0: any free port).",
)
@click.option(
    "--salesnexus-port",
    type=PORT,
    default=0,
    show_default=True,
    help="Port of the SalesNexus emulator (0: any free port).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_loopback_host,
    help="Loopback address to serve on; nothing else is accepted.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON line of base URLs and credentials instead of export lines.",
)
def sandbox(
    seed: int,
    contacts: int,
    activities: int,
    sales: int,
    rate: float | None,
    burst: int,
    retry_after: str,
    fault_rate: float,
    server_error: float | None,
    drop: float | None,
    truncate: float | None,
    slow: float | None,
    slow_seconds: float | None,
    row_failure: float | None,
    call_error: float | None,
    token_ttl: float,
    latency: float,
    field_id_offset: int,
    salesmanago_port: int,
    salesnexus_port: int,
    host: str,
    as_json: bool,
) -> None:
    """Serve emulators of SALESmanago and SalesNexus on loopback until Ctrl-C.

    Prints their base URLs and demo credentials as shell export lines, so that

    \b
        crm-etl sandbox > sandbox.env &
        sleep 1; . ./sandbox.env

    points every other command at the sandbox (--json prints one JSON line instead). The data
    is seeded deterministically; quota, faults and token lifetime are configurable to rehearse
    failures. Statistics: GET {base_url}/_sandbox/stats; POST {base_url}/_sandbox/reset;
    change faults while serving: POST {base_url}/_sandbox/faults with e.g. {"server_error": 1.0}.
    """
    overrides: dict[str, Any] = {
        "server_error": server_error,
        "drop": drop,
        "truncate": truncate,
        "slow": slow,
        "slow_seconds": slow_seconds,
        "row_failure": row_failure,
        "call_error": call_error,
    }
    config = build_config(
        seed=seed,
        contacts=contacts,
        activities=activities,
        sales=sales,
        rate=rate,
        burst=burst,
        retry_after=retry_after,
        fault_rate=fault_rate,
        overrides=overrides,
        token_ttl=token_ttl,
        latency=latency,
        field_id_offset=field_id_offset,
    )
    config = dataclasses.replace(config, owns_process=True)  # this process only serves
    try:
        asyncio.run(_serve(config, host, (salesmanago_port, salesnexus_port), as_json))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot serve the sandbox: {exc}") from exc
