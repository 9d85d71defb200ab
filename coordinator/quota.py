"""A per-tenant submit quota: a token bucket per tenant, so one tenant's flood is answered 429
(with ``Retry-After``) before it can starve the others, the sweeper or the table.

Buckets live in the replica's memory: with N replicas behind a load balancer a tenant gets up to
N times the rate, which is the point of the quota (fairness under load), not billing. The number
of buckets is bounded, so tenant ids made up by a hostile client cannot grow memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_TENANTS = 100_000
"""Buckets kept; the least recently used is forgotten (it refills anyway)."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class TenantQuota:
    """``rate`` submissions per second per tenant, ``burst`` at once; ``rate`` 0 turns it off."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, tenant_id: str) -> float:
        """0 when admitted; else the seconds until the next submission would be."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.pop(tenant_id, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[tenant_id] = bucket
        if len(self._buckets) > MAX_TENANTS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header's whole seconds, never 0."""
    return str(max(1, math.ceil(seconds)))
