"""The await sweeper: units at their deadline time out, stalled ones are asked again.

It looks at due units on every replica; each action is conditional, so two replicas acting on
one unit do it once. The execution sweeper hands it parked records that are still due after
at their wake time (``settle_parked``): a unit that never opened, one that closed without
moving its execution on, or an open one, whose deadline entry looks after it from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from coordinator.awaits.admission import Admitter
from coordinator.awaits.model import AwaitUnit, UnitStatus
from coordinator.awaits.port import AwaitTable
from coordinator.awaits.resuming import Resumer
from coordinator.dead_letters import DeadLetterPublisher
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import StaleRecord
from tpf.loops import repeat
from tpf.records import ExecutionRecord, Status
from tpf.settings import Timings

log = logging.getLogger("tpf.coordinator")


class DeadlineSweeper:
    def __init__(
        self,
        *,
        table: AwaitTable,
        store: ExecutionStore,
        dead_letters: DeadLetterPublisher,
        timings: Timings,
        shards: int,
        admitter: Admitter,
        resumer: Resumer,
    ) -> None:
        self.table, self.store, self.dead_letters = table, store, dead_letters
        self.timings, self.shards = timings, [str(i) for i in range(shards)]
        self.admitter, self.resumer = admitter, resumer

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.timings.sweep_interval.total_seconds()
        await repeat(
            lambda: self.sweep_once(now_ms()), stop, interval_s=interval, what="await-sweep"
        )

    async def sweep_once(self, now: int) -> int:
        found: Sequence[list[tuple[str, str]]] = await asyncio.gather(
            *(self.table.overdue(s, now_ms=now, limit=100) for s in self.shards)
        )
        acted = 0
        for tenant_id, unit_id in (u for shard in found for u in shard):
            unit = await self.table.get_unit(tenant_id, unit_id)
            if unit is None or unit.status is not UnitStatus.OPEN or unit.look_at_ms > now:
                continue
            acted += 1
            if await self.resumer.answered(unit):  # the resume after the last answer never happened
                await self.resumer.resume(unit)
            elif unit.deadline_ms <= now:
                await self._time_out(unit, now)
            else:
                if unit.in_flight:
                    await self.admitter.republish(unit)
                await self.admitter.admit(unit, now)
        return acted

    async def settle_parked(self, record: ExecutionRecord, now: int) -> bool:
        """Repair, end or stop watching a parked execution the sweeper woke; True when it repaired
        or ended it.

        A record parks with the wake time of the transition that parked it. Once its unit is
        open, the unit's deadline entry looks after it, so the record leaves the due index, or
        the record looks at its unit's deadline itself when the unit has no entry (``watched``);
        a unit that has not opened yet (its result may be delivered again) is looked for again
        at the record's due time, and only then is it taken as never opened.
        """
        assert record.await_unit_id is not None
        unit = await self.table.get_unit(record.tenant_id, record.await_unit_id)
        due = record.due_at_ms is not None and record.due_at_ms <= now
        if unit is None and not due:
            await self.store.rewake(record)  # bookkeeping, not an action
            return False
        if unit is None:
            await self._never_opened(record, now)
        elif unit.status is UnitStatus.OPEN and unit.watched:
            return await self._watch(record, unit, now)
        elif unit.status is UnitStatus.OPEN and unit.deadline_ms > now:
            await self.store.rewake(record, drop=True)
            return False
        elif unit.status is UnitStatus.OPEN:
            return False  # at its deadline: this sweeper's own pass times it out
        elif unit.status is UnitStatus.COMPLETED:
            await self.resumer.resume(unit)  # answered, but the resume never landed
        else:
            await self._time_out(unit, now)
        return True

    async def _watch(self, record: ExecutionRecord, unit: AwaitUnit, now: int) -> bool:
        """What the await sweeper does for a unit in its list, for one the record watches."""
        if await self.resumer.answered(unit):  # the resume after its answer never happened
            await self.resumer.resume(unit)
        elif unit.deadline_ms <= now:
            await self._time_out(unit, now)
        else:  # look again at its deadline, exactly
            await self.store.keep_waiting(record, due_at_ms=unit.deadline_ms)
            return False
        return True

    async def _never_opened(self, record: ExecutionRecord, now: int) -> None:
        await self.dead_letters.dead_letter_parked(
            self.store,
            record,
            error_code="AWAIT_NOT_OPENED",
            message="its await unit never opened (the step's result could not be committed)",
            now_ms=now,
        )
        log.warning(
            "parked execution had no await unit; dead-lettered",
            extra={"action": "await-never-opened", "executionId": record.execution_id},
        )

    async def _time_out(self, unit: AwaitUnit, now: int) -> None:
        record = await self.store.get(unit.tenant_id, unit.execution_id)
        if (
            record is not None
            and record.status is Status.WAITING_EXTERNAL
            and record.await_unit_id == unit.unit_id
        ):
            try:
                ended = await self.store.fail(
                    record,
                    transition_key=None,
                    status=Status.FAILED,
                    error_code="AWAIT_TIMEOUT",
                    message=f"no answer to {unit.step_id!r} before its deadline",
                    now_ms=now,
                )
            except StaleRecord:
                return  # completed or cancelled meanwhile: the next sweep sees it
            metrics.TERMINAL_FAILURES.labels(status="FAILED").inc()
            await self.dead_letters.publish(ended, reason="await timed out", transition_key=None)
            log.info(
                "await timed out",
                extra={"action": "await-timeout", "executionId": unit.execution_id},
            )
        await self.resumer.close(unit, UnitStatus.TIMED_OUT, record=record, now=now)
