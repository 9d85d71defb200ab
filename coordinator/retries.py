"""Retry decisions: exponential backoff with full jitter, capped (REFERENCE gap 4).

Full jitter (a uniform draw in [0, backoff]) spreads a burst of failures out instead of
retrying them in lock-step. A step's ``retry_after`` hint is a floor, never a way to retry sooner.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from tpf.contract import ContractRetry

SQS_MAX_DELAY = timedelta(seconds=900)


@dataclass(frozen=True)
class RetryDecision:
    action: Literal["retry", "dlq", "fail"]
    delay: timedelta = timedelta(0)

    @property
    def via_queue_delay(self) -> bool:
        """Short delays ride on SQS's DelaySeconds; longer ones wait for the sweeper."""
        return self.delay <= SQS_MAX_DELAY


def decide(
    policy: ContractRetry,
    *,
    failures: int,
    retryable: bool,
    retry_after: timedelta | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """What to do after the ``failures``-th failed attempt since the last re-drive."""
    if not retryable:
        return RetryDecision("fail")
    if failures >= policy.max_attempts:
        return RetryDecision("dlq")
    ceiling = policy.backoff(failures)
    delay = timedelta(seconds=(rng or random).uniform(0, ceiling.total_seconds()))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return RetryDecision("retry", delay)
