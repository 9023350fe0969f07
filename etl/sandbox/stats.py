"""Request statistics that tests and benchmarks read from Python."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestStats:
    """What an emulator has seen since start (or the last :meth:`reset`).

    ``requests`` counts every HTTP request received, including those answered 429 or faulted;
    ``calls`` counts API calls by endpoint path (SALESmanago) or function name (SalesNexus);
    ``batch_sizes`` records, per endpoint or function, the number of ids / rows / page size of
    each call, so ``largest_batch`` is the largest of them.
    """

    requests: int = 0
    served: int = 0
    rate_limited: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    calls_per_request: Counter[int] = field(default_factory=Counter)
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    logins: int = 0
    writes: int = 0
    request_times: list[float] = field(default_factory=list)
    rate_limited_times: list[float] = field(default_factory=list)

    @property
    def largest_batch(self) -> int:
        return max((max(sizes) for sizes in self.batch_sizes.values() if sizes), default=0)

    @property
    def max_calls_per_request(self) -> int:
        return max(self.calls_per_request, default=0)

    def record_batch(self, endpoint: str, size: int) -> None:
        self.batch_sizes.setdefault(endpoint, []).append(size)

    def achieved_rate(self) -> float:
        """HTTP requests per second between the first and the last request."""
        if len(self.request_times) < 2:
            return 0.0
        span = self.request_times[-1] - self.request_times[0]
        return (len(self.request_times) - 1) / span if span > 0 else 0.0

    def mark_request(self) -> None:
        self.requests += 1
        self.request_times.append(time.monotonic())

    def mark_rate_limited(self) -> None:
        self.rate_limited += 1
        self.rate_limited_times.append(time.monotonic())

    def rate_limited_after(self, seconds: float) -> int:
        """429s answered more than ``seconds`` after the first request (a client's start-up
        search for the quota is excused; 429s later mean its pace overshoots)."""
        if not self.request_times:
            return 0
        start = self.request_times[0] + seconds
        return sum(1 for t in self.rate_limited_times if t > start)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (batch sizes are summarised, request times left out)."""
        return {
            "requests": self.requests,
            "served": self.served,
            "rate_limited": self.rate_limited,
            "rate_limited_after_first_second": self.rate_limited_after(1.0),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "faults": dict(self.faults),
            "calls": dict(self.calls),
            "calls_per_request": {str(k): v for k, v in sorted(self.calls_per_request.items())},
            "max_calls_per_request": self.max_calls_per_request,
            "batch_sizes": {
                name: {"count": len(sizes), "max": max(sizes, default=0), "total": sum(sizes)}
                for name, sizes in self.batch_sizes.items()
            },
            "largest_batch": self.largest_batch,
            "logins": self.logins,
            "writes": self.writes,
            "achieved_rate": self.achieved_rate(),
        }

    def reset(self) -> None:
        fresh = RequestStats()
        self.__dict__.update(fresh.__dict__)
