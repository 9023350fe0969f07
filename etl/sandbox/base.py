"""What both emulators share: loopback serving, the quota, fault injection and statistics.

Each emulator subclasses :class:`Emulator`, adds its routes in :meth:`Emulator.add_routes` and says
how its API words a 429 in :meth:`Emulator.rate_limit_body`. Every emulator also answers
``GET {api_path}/_sandbox/stats``, ``POST {api_path}/_sandbox/reset`` and
``POST {api_path}/_sandbox/faults`` (a JSON object of :class:`FaultConfig` fields to change the
injected faults while serving) outside its statistics, quota and faults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
from collections.abc import Awaitable, Callable
from typing import Any, Self

import orjson
from aiohttp import web

from etl.sandbox.config import FaultConfig, SandboxConfig
from etl.sandbox.quota import TokenBucket
from etl.sandbox.stats import RequestStats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTML_ERROR = (
    "<!DOCTYPE html><html><head><title>{status} Server Error</title></head>"
    "<body><h1>{status}</h1><p>The server encountered a temporary error.</p></body></html>"
)


def _ensure_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the sandbox binds only to loopback addresses, not {host!r}")


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


class Emulator:
    """One CRM API served over real HTTP on 127.0.0.1 (an ephemeral port unless given)."""

    name = "emulator"
    api_path = "/api"

    def __init__(self, config: SandboxConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        _ensure_loopback(host)
        self.config = config
        self.host = host
        self.port = port
        self.stats = RequestStats()
        self.bucket = TokenBucket(config.quota)
        seed = config.faults.seed if config.faults.seed is not None else config.seed
        self.fault_rng = random.Random(seed)
        self._runner: web.AppRunner | None = None

    # -- subclass hooks -------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def rate_limit_body(self) -> Any:
        raise NotImplementedError

    # -- serving --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 needs brackets
        return f"http://{host}:{self.port}{self.api_path}"

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024**2)
        self.add_routes(app)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- admin endpoints (outside stats, quota and faults) ---------------------------------
    def reset(self, *, data: bool = False) -> None:
        """Fresh statistics, a full quota bucket and a re-seeded fault stream.

        With ``data`` the emulator also re-seeds its records (see :meth:`reseed`).
        """
        self.stats.reset()
        self.bucket = TokenBucket(self.config.quota)
        seed = self.config.faults.seed if self.config.faults.seed is not None else self.config.seed
        self.fault_rng.seed(seed)
        if data:
            self.reseed()

    def reseed(self) -> None:
        """Hook: rebuild the seeded records. Emulators that keep data override it."""

    def set_faults(self, changes: dict[str, Any]) -> FaultConfig:
        """Change some fault probabilities while serving (rehearse an outage and its end)."""
        known = {f.name for f in dataclasses.fields(FaultConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {', '.join(unknown)}")
        faults = dataclasses.replace(self.config.faults, **changes)
        self.config = dataclasses.replace(self.config, faults=faults)
        return faults

    async def _admin(self, request: web.Request) -> web.StreamResponse | None:
        """``GET .../_sandbox/stats``, ``POST .../_sandbox/reset`` and ``.../_sandbox/faults``."""
        prefix = f"{self.api_path}/_sandbox/"
        if not request.path.startswith(prefix):
            return None
        action = request.path[len(prefix) :]
        if action == "stats" and request.method == "GET":
            return json_response(self.stats.to_dict())
        if action == "reset" and request.method == "POST":
            data = request.query.get("data", "").lower() in ("1", "true", "yes")
            if request.can_read_body:
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    data = data or bool(body.get("data"))
            self.reset(data=data)
            return json_response({"reset": True, "data": data})
        if action == "faults" and request.method == "POST":
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object of fault settings")
                faults = self.set_faults(body)
            except (ValueError, TypeError) as exc:
                return json_response({"error": str(exc)}, status=400)
            return json_response({"faults": dataclasses.asdict(faults)})
        if action in ("stats", "reset", "faults"):
            return json_response({"error": "method not allowed"}, status=405)
        return json_response({"error": f"unknown sandbox endpoint {action!r}"}, status=404)

    # -- the contract's transport behaviour ------------------------------------------------
    def chance(self, probability: float) -> bool:
        return probability > 0 and self.fault_rng.random() < probability

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        admin = await self._admin(request)
        if admin is not None:
            return admin
        stats = self.stats
        stats.mark_request()
        wait = self.bucket.try_acquire()
        if wait is not None:
            stats.mark_rate_limited()
            stats.status_counts[429] += 1
            response = json_response(self.rate_limit_body(), status=429)
            response.headers["Retry-After"] = self.bucket.retry_after_header(wait)
            return response

        faults = self.config.faults
        drop_after = False
        if self.chance(faults.drop):
            stats.faults["drop"] += 1
            if self.fault_rng.random() < 0.5:
                return self._drop(request)
            drop_after = True  # the request is processed, then the answer is lost
        if self.chance(faults.server_error):
            stats.faults["server_error"] += 1
            return self._server_error()
        if self.config.latency > 0:
            await asyncio.sleep(self.config.latency)
        if self.chance(faults.slow):
            stats.faults["slow"] += 1
            await asyncio.sleep(faults.slow_seconds)

        response = await handler(request)
        if drop_after:
            return self._drop(request)
        if self.chance(faults.truncate) and isinstance(response, web.Response) and response.body:
            stats.faults["truncate"] += 1
            body = bytes(response.body)  # type: ignore[arg-type]
            response.body = body[: max(1, len(body) // 2)]
        stats.status_counts[response.status] += 1
        if response.status < 300:
            stats.served += 1
        return response

    def _server_error(self) -> web.Response:
        status = self.fault_rng.choice([500, 502, 503, 504])
        self.stats.status_counts[status] += 1
        if self.fault_rng.random() < 0.5:
            return web.Response(
                text=HTML_ERROR.format(status=status), status=status, content_type="text/html"
            )
        return json_response({"success": False, "message": ["Internal server error"]}, status)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        """Abort the TCP connection; the client sees it closed with no answer."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=499)
