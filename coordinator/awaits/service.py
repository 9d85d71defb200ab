"""Opening, admitting, completing and timing out await units; resuming exactly once.

Every step is idempotent and ordered so a crash anywhere is repaired by a retry of the same
call (a redelivered result or completion message, a client retrying its HTTP call) or by the
await sweeper, which looks at a unit at its deadline and, while requests are out, whenever it
made no progress for ``Timings.await_stall``::

    open:     interactions ─ unit (if absent) ─ admit
    admit:    reserve (cursor + tenant count, one transaction) ─ publish the reserved requests
    complete: interactions PENDING→COMPLETED + unit.done+k (one transaction per unit and batch;
              a solo interaction's is one conditional write, its status the unit's answer)
              ─ if done = total: resume the execution (conditional) ─ unit COMPLETED
              ─ else: admit the next requests
    sweep:    overdue ─ complete? resume : fail AWAIT_TIMEOUT ─ unit TIMED_OUT
              stalled ─ publish the requests still out again (providers dedupe by key) ─ admit

Requests are published at least once; completions are recorded exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from coordinator.awaits.admission import Admission, Admitter
from coordinator.awaits.completing import Completed, CompletionRequest, canonical
from coordinator.awaits.deadlines import DeadlineSweeper
from coordinator.awaits.model import AwaitUnit, Inbox, Interaction, UnitStatus, carried_unit
from coordinator.awaits.opening import UnitOpener
from coordinator.awaits.port import AwaitTable
from coordinator.awaits.recording import CompletionRecorder
from coordinator.awaits.resuming import Resumer
from coordinator.awaits.transports import Transports
from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.store import ExecutionStore
from tpf.clock import now_ms
from tpf.errors import NotFound, TpfError
from tpf.payloads import PayloadStore
from tpf.queues import Queue
from tpf.records import ExecutionRecord
from tpf.registry import Registry
from tpf.settings import Timings
from tpf.signing import Signer
from tpf.wire import Suspension

__all__ = ["Admission", "AwaitService", "Completed", "CompletionRequest", "canonical"]


class AwaitService:
    """The awaits as the rest of the coordinator sees them: one collaborator per phase
    (opening, admission, recording completions, resuming, deadlines) behind a few calls."""

    def __init__(
        self,
        *,
        table: AwaitTable,
        store: ExecutionStore,
        registry: Registry,
        payloads: PayloadStore,
        dispatcher: Dispatcher,
        dead_letters: DeadLetterPublisher,
        transports: Transports,
        signer: Signer,
        timings: Timings,
        admission: Admission | None = None,
        answers: Queue | None = None,
        shards: int = 4,
    ) -> None:
        self.table, self.transports, self.store = table, transports, store
        self.resumer = Resumer(
            table=table, store=store, registry=registry, payloads=payloads, dispatcher=dispatcher
        )
        self.admitter = Admitter(
            table=table,
            transports=transports,
            signer=signer,
            timings=timings,
            limits=admission or Admission(),
            answers=answers,
            resumer=self.resumer,
        )
        self.opener = UnitOpener(
            table=table,
            registry=registry,
            payloads=payloads,
            admitter=self.admitter,
            resumer=self.resumer,
        )
        self.recorder = CompletionRecorder(
            table=table,
            store=store,
            registry=registry,
            signer=signer,
            admitter=self.admitter,
            resumer=self.resumer,
        )
        self.deadlines = DeadlineSweeper(
            table=table,
            store=store,
            dead_letters=dead_letters,
            timings=timings,
            shards=shards,
            admitter=self.admitter,
            resumer=self.resumer,
        )

    async def open(
        self, record: ExecutionRecord, suspension: Suspension, *, resume_step: int
    ) -> None:
        """Store the unit and its interactions of a just-parked execution, then admit."""
        await self.opener.open(record, suspension, resume_step=resume_step)

    async def complete(
        self,
        tenant_id: str,
        *,
        response: Any,
        interaction_id: str | None = None,
        correlation: str | None = None,
        resume_token: str | None = None,
        idempotency_key: str | None = None,
        actor: str | None = None,
    ) -> Completed:
        request = CompletionRequest(
            tenant_id=tenant_id,
            response=response,
            interaction_id=interaction_id,
            correlation=correlation,
            resume_token=resume_token,
            idempotency_key=idempotency_key,
            actor=actor,
        )
        [outcome] = await self.recorder.complete_many([request])
        if isinstance(outcome, TpfError):
            raise outcome
        return outcome

    async def complete_many(
        self, requests: Sequence[CompletionRequest]
    ) -> list[Completed | TpfError]:
        """Judge and record a batch; one outcome per request, in order."""
        return await self.recorder.complete_many(requests)

    async def pending(
        self,
        tenant_id: str,
        *,
        step_id: str | None = None,
        assignee: str | None = None,
        group: str | None = None,
        limit: int = 100,
    ) -> list[Interaction]:
        """The tenant's inbox, oldest first: interactions that can be answered now."""
        waiting = await self.waiting(
            tenant_id, step_id=step_id, assignee=assignee, group=group, limit=limit
        )
        return [interaction for interaction, _ in waiting]

    async def waiting(
        self,
        tenant_id: str,
        *,
        step_id: str | None = None,
        assignee: str | None = None,
        group: str | None = None,
        limit: int = 100,
    ) -> list[tuple[Interaction, str | None]]:
        """The inbox with the type id of the answer each interaction waits for (TPF's
        ``outputType``; None for units opened before 2026-12, which did not store it).

        A unit's interactions are written before the unit itself, so for a moment after a park
        an interaction can be listed whose unit is not open yet; an answer to it would be
        refused (``AWAIT_CLOSED``), so it is left out until its unit opens.
        """
        where = Inbox(not_before_ms=now_ms(), step_id=step_id, assignee=assignee, group=group)
        found = await self.table.pending(tenant_id, limit=limit, where=where)
        # A carried unit is read with its interaction; only the others are read again.
        units = await self.table.get_units(
            [(i.tenant_id, i.unit_id) for i in found if i.carries is None]
        )
        units.update({(i.tenant_id, i.unit_id): carried_unit(i) for i in found if i.carries})
        return [
            (i, unit.response_type)
            for i in found
            if (unit := units.get((i.tenant_id, i.unit_id))) is not None
            and unit.status is UnitStatus.OPEN
        ]

    async def waited_on(self, tenant_id: str, execution_id: str) -> AwaitUnit:
        """The await unit the execution waits on now, with how many of its interactions are
        answered so far."""
        record = await self.store.get(tenant_id, execution_id)
        if record is None:
            raise NotFound(f"no execution {execution_id} for tenant {tenant_id}")
        unit = None
        if record.await_unit_id is not None:
            unit = await self.table.get_unit(tenant_id, record.await_unit_id)
        if unit is None:  # not parked yet, or its unit is not open yet
            raise NotFound(f"execution {execution_id} waits on no await")
        return unit

    async def recorded_answers(self, tenant_id: str, unit_id: str) -> bytes:
        """The answers a carried unit handed on, read back (``PayloadStore.answers``)."""
        return await self.resumer.recorded_answers(tenant_id, unit_id)

    async def run(self, stop: asyncio.Event) -> None:
        """The await sweeper's loop (on every replica: each action is conditional)."""
        await self.deadlines.run(stop)

    async def sweep_once(self, now: int) -> int:
        return await self.deadlines.sweep_once(now)

    async def settle_parked(self, record: ExecutionRecord, now: int) -> bool:
        """A parked record at its wake time (``DeadlineSweeper.settle_parked``)."""
        return await self.deadlines.settle_parked(record, now)

    async def abandon(self, parked: ExecutionRecord, ended: ExecutionRecord) -> None:
        """Close the unit ``parked`` waited on, now that it ``ended`` otherwise (a cancel), so
        the inbox stops listing it. The await sweeper would close it at its deadline, but a
        unit its record watches (``AwaitUnit.watched``) is in no sweeper's list."""
        if parked.await_unit_id is None:
            return
        unit = await self.table.get_unit(parked.tenant_id, parked.await_unit_id)
        if unit is not None and unit.status is UnitStatus.OPEN:
            await self.resumer.close(
                unit, UnitStatus.ABANDONED, record=ended, now=ended.updated_at_ms
            )
