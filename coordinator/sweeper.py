"""The sweeper: finds due work through the sparse due index and acts on it (no Scan).

Due work is a QUEUED record whose dispatch never happened (its submitter died), a retry whose
time has come (delays longer than SQS's 900 s), a transition whose deadline passed (command
lost, dead-lettered, or every worker that took it died), and a parked record still waiting a
grace after its await's deadline (handed to the awaits, which repair or end it). Every replica
sweeps every shard; each action is a conditional write, so racing replicas cost a failed
write, never a double dispatch.

The index is keyed by a record's wake time, a lower bound of its due time. A record woken
before it is due gets its wake time moved to its due time; a parked one is handed to the
awaits, which leave it to its unit's deadline once the unit is open.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from coordinator.dispatcher import Dispatcher
from coordinator.store import DueEntry, ExecutionStore
from coordinator.transitions import IN_FLIGHT, TransitionCommitter
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import StaleRecord
from tpf.loops import repeat
from tpf.records import ExecutionRecord, Status
from tpf.settings import Timings
from tpf.wire import Failure

log = logging.getLogger("tpf.coordinator")

TIMEOUT = Failure(
    category="timeout",
    error_code="TRANSITION_TIMEOUT",
    message="the transition's deadline passed without a result",
    retryable=True,
)


class Sweeper:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        dispatcher: Dispatcher,
        committer: TransitionCommitter,
        shards: int,
        timings: Timings,
        settle_parked: Callable[[ExecutionRecord, int], Awaitable[bool]] | None = None,
        batch: int = 100,
    ) -> None:
        self.store, self.dispatcher, self.committer = store, dispatcher, committer
        self.settle_parked = settle_parked
        self.shards = [str(i) for i in range(shards)]
        self.timings, self.batch = timings, batch

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.timings.sweep_interval.total_seconds()
        await repeat(lambda: self.sweep_once(now_ms()), stop, interval_s=interval, what="sweep")

    async def sweep_once(self, now: int) -> int:
        """Act on everything due at ``now``; returns how many actions applied."""
        # Replicas start at different shards so they rarely contend for the same records.
        shards = random.sample(self.shards, len(self.shards))
        found = await asyncio.gather(
            *(self.store.due(s, now_ms=now, limit=self.batch) for s in shards)
        )
        outcomes = await asyncio.gather(*(self._act(e, now) for entries in found for e in entries))
        return sum(outcomes)

    async def _act(self, entry: DueEntry, now: int) -> bool:
        record = await self.store.get(entry.tenant_id, entry.execution_id)
        if record is None or record.wake_at_ms is None or record.wake_at_ms > now:
            return False  # the index lags the table; the record moved on
        if record.status is Status.WAITING_EXTERNAL and self.settle_parked is not None:
            return await self._settle_parked(record, now)
        if record.due_at_ms is None or record.due_at_ms > now:
            # Woken early (the wake time is a lower bound): look again when it is due.
            if await self.store.rewake(record):
                metrics.SWEEPS.labels(action="rewake").inc()
            return False
        try:
            if record.status is Status.QUEUED or (
                record.status is Status.WAIT_RETRY and record.transition_key is None
            ):
                await self.dispatcher.dispatch(record, now_ms=now, only_if_due=True)
                metrics.SWEEPS.labels(action="dispatch").inc()
            elif record.status in IN_FLIGHT:
                await self.committer.fail_attempt(record, TIMEOUT, now_ms=now, timed_out=True)
                metrics.SWEEPS.labels(action="timeout").inc()
                log.info(
                    "transition timed out",
                    extra={
                        "action": "timeout",
                        "executionId": record.execution_id,
                        "transitionKey": record.transition_key,
                    },
                )
            else:
                return False
        except StaleRecord:
            metrics.SWEEPS.labels(action="lost-race").inc()
            return False
        return True

    async def _settle_parked(self, record: ExecutionRecord, now: int) -> bool:
        assert self.settle_parked is not None
        try:
            if not await self.settle_parked(record, now):
                return False
        except StaleRecord:
            metrics.SWEEPS.labels(action="lost-race").inc()
            return False
        metrics.SWEEPS.labels(action="parked").inc()
        return True
