"""The exception hierarchy of the CRM clients.

``CRMError`` is the root. Transient trouble (429, 5xx, dropped connections, invalid JSON) is retried
inside the client and only surfaces as :class:`RetryBudgetExhausted` once the budget is spent.
Authentication failures and limit violations are never retried. No message ever carries a secret.
"""

from __future__ import annotations


class CRMError(Exception):
    """Base class of every error raised by a CRM client."""


class AuthenticationError(CRMError):
    """The CRM refused the credentials. Never retried."""


class LimitExceededError(CRMError):
    """A call went over one of the API's limits: a bug in the caller, never retried."""


class APIError(CRMError):
    """The CRM answered a call with an error (``success: false`` or a per-call error)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotFoundError(APIError):
    """The record does not exist."""


class InvalidParameterError(APIError):
    """A parameter was rejected by the CRM."""


class TransientError(CRMError):
    """One failed attempt that may succeed when retried (internal; seen only via ``__cause__``)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """HTTP 429; ``retry_after`` holds the server's ``Retry-After`` in seconds when given."""


class AmbiguousWriteError(CRMError):
    """A write that is not safe to repeat failed after it may have reached the CRM.

    A dropped connection, a lost or garbled answer or a 5xx leaves it unknown whether the CRM
    applied the write. Upserts are simply retried; creates (a PURCHASE event, a SalesNexus
    activity, note or sales opportunity) are not, since a blind retry could duplicate the record:
    look it up first, then send it again if it is not there.
    """


class RetryBudgetExhausted(CRMError):
    """Transient failures outlasted the retry budget. The run may be resumed later."""

    def __init__(self, message: str, *, attempts: int, last_error: str) -> None:
        super().__init__(f"{message}: gave up after {attempts} attempts ({last_error})")
        self.attempts = attempts
        self.last_error = last_error
