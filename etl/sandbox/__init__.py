"""Emulators of the SALESmanago and SalesNexus APIs, served over real HTTP on loopback."""

from etl.sandbox.config import FaultConfig, QuotaConfig, SandboxConfig
from etl.sandbox.salesmanago import SalesManagoEmulator
from etl.sandbox.salesnexus import SalesNexusEmulator
from etl.sandbox.server import Sandbox
from etl.sandbox.stats import RequestStats

__all__ = [
    "FaultConfig",
    "QuotaConfig",
    "RequestStats",
    "SalesManagoEmulator",
    "SalesNexusEmulator",
    "Sandbox",
    "SandboxConfig",
]
