"""Both emulators in one process, for tests, demos and benchmarks."""

from __future__ import annotations

from typing import Self

from etl.sandbox.config import SandboxConfig
from etl.sandbox.salesmanago import SalesManagoEmulator
from etl.sandbox.salesnexus import SalesNexusEmulator


class Sandbox:
    """``async with Sandbox(config) as sandbox:`` serves SALESmanago and SalesNexus on loopback.

    Ports default to ephemeral ones; read ``sandbox.salesmanago.base_url`` and
    ``sandbox.salesnexus.base_url`` once inside the block.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        salesmanago_port: int = 0,
        salesnexus_port: int = 0,
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.salesmanago = SalesManagoEmulator(self.config, host=host, port=salesmanago_port)
        self.salesnexus = SalesNexusEmulator(self.config, host=host, port=salesnexus_port)

    async def start(self) -> None:
        await self.salesmanago.start()
        try:
            await self.salesnexus.start()
        except BaseException:
            await self.salesmanago.stop()
            raise

    async def stop(self) -> None:
        try:
            await self.salesnexus.stop()
        finally:
            await self.salesmanago.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
