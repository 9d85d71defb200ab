"""Resuming an execution once every interaction of its await unit is answered, exactly once,
and closing units (completed, timed out, abandoned) with their wait timed."""

from __future__ import annotations

import json
import logging
from typing import Any

from coordinator.awaits.completing import canonical
from coordinator.awaits.model import AwaitUnit, Interaction, InteractionStatus, UnitStatus
from coordinator.awaits.port import AwaitTable
from coordinator.dispatcher import INLINE_MESSAGE_LIMIT, Dispatcher
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import StaleRecord
from tpf.pages import PAGE_ITEMS, PageWriter
from tpf.payloads import PayloadMissing, PayloadRef, PayloadStore
from tpf.record_size import Slot, inline_room
from tpf.records import ExecutionRecord, Status
from tpf.registry import Registry

log = logging.getLogger("tpf.coordinator")


class Resumer:
    def __init__(
        self,
        *,
        table: AwaitTable,
        store: ExecutionStore,
        registry: Registry,
        payloads: PayloadStore,
        dispatcher: Dispatcher,
    ) -> None:
        self.table, self.store, self.registry = table, store, registry
        self.payloads, self.dispatcher = payloads, dispatcher

    async def resume(
        self,
        unit: AwaitUnit,
        *,
        answered: Interaction | None = None,
        record: ExecutionRecord | None = None,
    ) -> None:
        """Hand the answers to the execution (a conditional resume), then close the unit (a
        carried one was completed by its answer, ``answered`` when it is at hand).

        ``record``: the execution's, read consistently just before (to judge the answer). The
        resume is conditional on its version, and any change since that bumped the version
        (a resume by another replica, a cancel, a timeout) is one that ends this resume anyway.
        """
        if record is None:
            record = await self.store.get(unit.tenant_id, unit.execution_id)
        if (
            record is None
            or record.status is not Status.WAITING_EXTERNAL
            or record.await_unit_id != unit.unit_id
        ):
            await self.close(unit, UnitStatus.ABANDONED, record=record)
            return
        if unit.carried and answered is not None and answered.response is not None:
            answers: Any = answer_of(answered)  # as recorded: no need to read it back
        else:
            answers = await self._answers(unit, paged=unit.paged)
        if answers is None:
            return
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        data = canonical(answers).encode()
        slot: Slot = "result" if unit.resume_step >= len(contract.steps) else "continuation"
        room = inline_room(record, slot)
        if unit.carried and slot == "continuation" and room < len(data) <= INLINE_MESSAGE_LIMIT:
            # Its answer is stored already, in its interaction: the record points there, and
            # a command that has to be sent again reads it back (``recorded_answers``).
            ref = PayloadRef.of_answers(unit.unit_id)
        else:
            ref = await self.payloads.put(
                unit.tenant_id, unit.execution_id, data, inline_limit=room
            )
        now = now_ms()
        try:
            if unit.resume_step >= len(contract.steps):
                await self.store.finish_await(
                    record, await_unit_id=unit.unit_id, result=ref, now_ms=now
                )
            else:
                running = await self.store.resume(
                    record,
                    await_unit_id=unit.unit_id,
                    step_index=unit.resume_step,
                    continuation=ref,
                    now_ms=now,
                    dispatch_deadline_ms=self.dispatcher.deadline(now),
                )
                await self.dispatcher.send(running, now_ms=now, payload=data)
        except StaleRecord:
            resumed = False  # another replica resumed it
        else:
            resumed = True
        if not unit.carried:
            await self.close(unit, UnitStatus.COMPLETED, record=record, now=now)
        elif resumed:  # its answer completed it: nothing to write, and it is timed here, once
            _observe_wait(unit, UnitStatus.COMPLETED, record, now)
        log.info(
            "await completed",
            extra={"action": "await-resume", "executionId": unit.execution_id},
        )

    async def recorded_answers(self, tenant_id: str, unit_id: str) -> bytes:
        """What the resume of carried unit ``unit_id`` handed on: read from its interaction,
        as it was then (an answered interaction never changes)."""
        found = await self.table.interactions(tenant_id, unit_id, start=0, stop=1)
        if not found or found[0].carries is None or found[0].response is None:
            raise PayloadMissing(f"the answer of await unit {unit_id} is gone")
        return canonical(answer_of(found[0])).encode()

    async def answered(self, unit: AwaitUnit) -> bool:
        """Every interaction answered: counted on the unit, or the answer of a solo interaction,
        which is not counted (``Interaction.solo``)."""
        if unit.complete:
            return True
        if unit.carried or unit.itemized or unit.total != 1:  # a carried one is read whole
            return False
        only = await self.table.get_interaction(unit.tenant_id, unit.unit_id, 0)
        return only is not None and only.solo and only.status is InteractionStatus.COMPLETED

    async def _answers(self, unit: AwaitUnit, *, paged: bool) -> Any | None:
        """What the step after the await receives, read a page at a time (and written as
        pages when the release reads them), or None while an answer is missing."""
        writer = PageWriter(self.payloads, unit.tenant_id, unit.execution_id) if paged else None
        window = PAGE_ITEMS if paged else max(unit.total, 1)
        listed: list[dict[str, Any]] = []
        for start in range(0, max(unit.total, 1), window):
            interactions = await self.table.interactions(
                unit.tenant_id, unit.unit_id, start=start, stop=start + window
            )
            unanswered = sum(1 for i in interactions if i.response is None)
            if unanswered:
                # The counter says done but an answer is missing: a store whose transactions
                # are not isolated (moto's server under concurrent rounds) counted one twice.
                # Resuming would hand the step a null answer; the missing answers arrive (or
                # are asked for again after a stall) and count, and the unit resumes then.
                log.warning(
                    "await unit counted complete with %d unanswered interactions; waiting",
                    unanswered,
                    extra={"action": "await-miscounted", "executionId": unit.execution_id},
                )
                return None
            if not unit.itemized:
                return answer_of(interactions[0]) if interactions else None
            for i in interactions:
                if writer is not None:
                    await writer.add(answer_of(i))
                else:
                    listed.append(answer_of(i))
        return await writer.finish() if writer is not None else listed

    async def close(
        self,
        unit: AwaitUnit,
        status: UnitStatus,
        *,
        record: ExecutionRecord | None,
        now: int | None = None,
    ) -> None:
        closed = await self.table.close_unit(unit.tenant_id, unit.unit_id, status, seen=unit)
        if closed is not None:
            # Only the call that closed it observes, so a unit is timed once across replicas.
            _observe_wait(unit, status, record, now_ms() if now is None else now)
        if status is not UnitStatus.COMPLETED and not unit.carried:  # closing took it out
            await self.table.expire(await self.table.interactions(unit.tenant_id, unit.unit_id))


def _observe_wait(
    unit: AwaitUnit, status: UnitStatus, record: ExecutionRecord | None, now: int
) -> None:
    """Time the unit from opening to closing, in ``tpf_await_seconds``.

    A unit its execution no longer waits for is ``abandoned`` even when the sweeper closes it
    at its deadline (a cancel leaves the unit open); it ended when the execution last changed.
    """
    waited_on = (
        record is not None
        and record.status is Status.WAITING_EXTERNAL
        and record.await_unit_id == unit.unit_id
    )
    if status is UnitStatus.COMPLETED:
        outcome, ended = "completed", now
    elif status is UnitStatus.TIMED_OUT and waited_on:
        outcome, ended = "timed_out", now
    else:
        outcome = "abandoned"
        ended = now if record is None or waited_on else min(now, record.updated_at_ms)
    metrics.AWAIT_SECONDS.labels(
        pipeline=record.pipeline_id if record is not None else "unknown",
        step=unit.step_id,
        transport=unit.transport,
        outcome=outcome,
    ).observe(max(0, ended - unit.created_at_ms) / 1000)


def answer_of(i: Interaction) -> dict[str, Any]:
    """What the step after the await receives for ``i`` (``Awaited`` or ``AwaitedOnce``)."""
    answer = {"request": json.loads(i.request), "response": json.loads(i.response or "null")}
    if i.duplicate_of is not None:
        answer["duplicateOf"] = json.loads(i.duplicate_of)
    return answer
