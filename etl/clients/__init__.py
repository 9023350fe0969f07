"""Async clients for the SALESmanago and SalesNexus APIs.

The public surface is small: a config, a client per CRM, the records they return and the errors
they raise. Pacing, retries, chunking and (for SalesNexus) call packing happen inside.
"""

from etl.clients.config import (
    Pacing,
    RetryPolicy,
    SalesManagoConfig,
    SalesNexusConfig,
    Timeouts,
)
from etl.clients.errors import (
    AmbiguousWriteError,
    APIError,
    AuthenticationError,
    CRMError,
    InvalidParameterError,
    LimitExceededError,
    NotFoundError,
    RetryBudgetExhausted,
)
from etl.clients.results import ContactPage, ContactRef, RecordPage, RowOutcome, TransportStats
from etl.clients.salesmanago import SalesManagoClient
from etl.clients.salesnexus import SalesNexusClient

__all__ = [
    "APIError",
    "AmbiguousWriteError",
    "AuthenticationError",
    "CRMError",
    "ContactPage",
    "ContactRef",
    "InvalidParameterError",
    "LimitExceededError",
    "NotFoundError",
    "Pacing",
    "RecordPage",
    "RetryBudgetExhausted",
    "RetryPolicy",
    "RowOutcome",
    "SalesManagoClient",
    "SalesManagoConfig",
    "SalesNexusClient",
    "SalesNexusConfig",
    "Timeouts",
    "TransportStats",
]
