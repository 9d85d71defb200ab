"""Admission: how many await requests are out at once, and sending them.

Requests are reserved before they are sent (the unit's cursor and the tenant's count move in one
transaction), so a crash between the two sends nothing twice that was not reserved; the await
sweeper sends again what a stall suggests was lost.

An exclusive await claims each request's key just before sending it. A key another execution
owns is not sent: its interaction is answered at once as a duplicate naming the owner, and the
unit moves on (resumes when that was its last answer).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

from coordinator.awaits.completing import canonical, claims_of
from coordinator.awaits.model import (
    AwaitUnit,
    Claim,
    Interaction,
    InteractionStatus,
    UnitStatus,
)
from coordinator.awaits.port import AwaitTable
from coordinator.awaits.resuming import Resumer
from coordinator.awaits.transports import Transport, Transports
from tpf.clock import now_ms
from tpf.errors import ConfigurationError, StaleRecord
from tpf.queues import Queue
from tpf.settings import Timings
from tpf.signing import Signer

log = logging.getLogger("tpf.coordinator")

MAX_OWNER_ANSWER = 4096
"""Bytes of the owner's answer copied into a duplicate's; a larger one is named, not copied."""


@dataclass(frozen=True)
class Admission:
    """How many await requests may be out at once (REFERENCE section 3)."""

    per_unit: int = 200
    per_tenant: int = 2_000


class Admitter:
    """Reserves the next requests of a unit within its limits, then publishes them."""

    def __init__(
        self,
        *,
        table: AwaitTable,
        transports: Transports,
        signer: Signer,
        timings: Timings,
        limits: Admission,
        answers: Queue | None,
        resumer: Resumer,
    ) -> None:
        self.table, self.transports, self.signer = table, transports, signer
        self.timings, self.limits, self.resumer = timings, limits, resumer
        self.answers = answers
        """The completion queue, consulted before deciding an await has stalled."""

    def bounded(self, transport_name: str) -> bool:
        """Whether admission limits a transport; a human inbox has nothing to flood."""
        try:
            transport = self.transports.get(transport_name)
        except ConfigurationError:
            return True
        return bool(getattr(transport, "admission", True))

    def token(self, interaction: Interaction) -> str:
        """The signed resume token a request carries, so its answer can name it."""
        return self.signer.mint_token(claims_of(interaction))

    async def admit(self, unit: AwaitUnit, now: int) -> None:
        """Reserve the next requests (unit cursor and tenant count together), then send them.

        Requests answered as duplicates free their room at once, so admission goes on.
        """
        while True:
            transport = self._transport(unit)
            reserved = await self._reserve(unit, now) if transport is not None else None
            if transport is None or reserved is None:
                return
            moved, start = reserved
            if not await self._publish(transport, moved, start=start, stop=moved.published):
                return
            fresh = await self._settled(unit)
            if fresh is None:
                return
            unit = fresh

    async def _settled(self, unit: AwaitUnit) -> AwaitUnit | None:
        """After duplicates were answered: resume a unit they completed; else the open unit."""
        fresh = await self.table.get_unit(unit.tenant_id, unit.unit_id)
        if fresh is None or fresh.status is not UnitStatus.OPEN:
            return None
        if await self.resumer.answered(fresh):
            await self.resumer.resume(fresh)
            return None
        return fresh

    async def _reserve(self, unit: AwaitUnit, now: int) -> tuple[AwaitUnit, int] | None:
        """Move the unit's cursor within its limits: the moved unit and where sending starts."""
        bounded = self.bounded(unit.transport)
        limits = self.limits
        stall_ms = int(self.timings.await_stall.total_seconds() * 1000)
        for _ in range(5):
            target = min(unit.total, unit.done + limits.per_unit) if bounded else unit.total
            upto = max(unit.published, target)
            moved = replace(
                unit,
                published=upto,
                accounted=upto - unit.done if bounded else 0,
                wake_ms=now + stall_ms if bounded and upto > unit.done else None,
            )
            try:
                if not await self.table.advance(unit, moved, tenant_limit=limits.per_tenant):
                    # The tenant is at its limit: take what room is left, look again soon.
                    room = limits.per_tenant - await self.table.tenant_in_flight(unit.tenant_id)
                    upto = max(unit.published, min(upto, unit.done + unit.accounted + room))
                    retry_at = now + int(self.timings.sweep_interval.total_seconds() * 2000)
                    moved = replace(
                        moved,
                        published=upto,
                        accounted=upto - unit.done,
                        wake_ms=retry_at if upto < target else moved.wake_ms,
                    )
                    if not await self.table.advance(unit, moved, tenant_limit=limits.per_tenant):
                        return None  # still full; the sweeper comes back at wake_ms
            except StaleRecord:
                fresh = await self.table.get_unit(unit.tenant_id, unit.unit_id)
                if fresh is None or fresh.status is not UnitStatus.OPEN or fresh.complete:
                    return None
                unit = fresh
                continue
            return (moved, unit.published) if upto > unit.published else None
        return None

    async def republish(self, unit: AwaitUnit) -> None:
        """Send again what is out and unanswered: the provider may have lost it.

        Not while requests wait unread, nor answers unrecorded: someone is only behind, and
        more copies would bury them deeper.
        """
        transport = self._transport(unit)
        if transport is None or not unit.published:
            return
        backlog = getattr(transport, "backlog", None)
        if backlog is not None and await backlog() > 0:
            return
        if self.answers is not None and await self.answers.backlog() > 0:
            return
        if await self._publish(transport, unit, start=0, stop=unit.published):
            await self._settled(unit)
        log.info(
            "await requests sent again after a stall",
            extra={"action": "await-republish", "executionId": unit.execution_id},
        )

    def _transport(self, unit: AwaitUnit) -> Transport | None:
        try:
            return self.transports.get(unit.transport)
        except ConfigurationError as exc:
            # Nothing is published; the deadline ends the await, and the message says what to add.
            log.error(str(exc), extra={"action": "await-open", "executionId": unit.execution_id})
            return None

    async def _publish(
        self, transport: Transport, unit: AwaitUnit, *, start: int, stop: int
    ) -> int:
        """Send the waiting requests of ``[start, stop)``; how many were answered as duplicates."""
        found = await self.table.interactions(unit.tenant_id, unit.unit_id, start=start, stop=stop)
        waiting = [i for i in found if i.status is InteractionStatus.PENDING]
        duplicates: list[Interaction] = []
        if unit.exclusive_ms:
            waiting, duplicates = await self._claim(unit, waiting)
        if waiting:
            await transport.publish(
                unit, waiting, {i.interaction_id: self.token(i) for i in waiting}
            )
        if not duplicates:
            return 0
        return len(await self.table.record(duplicates))

    async def _claim(
        self, unit: AwaitUnit, waiting: list[Interaction]
    ) -> tuple[list[Interaction], list[Interaction]]:
        """(the requests this execution owns and sends, those answered as duplicates)."""
        assert unit.exclusive_ms is not None
        now = now_ms()
        owned, duplicates = [], []
        for i in waiting:
            asked = Claim(
                tenant_id=i.tenant_id,
                step_id=i.step_id,
                key=i.idempotency_key,
                execution_id=i.execution_id,
                unit_id=i.unit_id,
                item_index=i.item_index,
                claimed_at_ms=now,
                until_ms=now + unit.exclusive_ms,
            )
            owner = await self.table.claim(asked, now_ms=now)
            if owner is None:
                owned.append(i)
                continue
            duplicates.append(await self._duplicate(i, owner, now))
        return owned, duplicates

    async def _duplicate(self, i: Interaction, owner: Claim, now: int) -> Interaction:
        """``i`` answered by the coordinator: nothing sent, the owner and its outcome named."""
        sent = await self.table.get_interaction(owner.tenant_id, owner.unit_id, owner.item_index)
        answer = sent.response if sent is not None else None
        document = {
            "executionId": owner.execution_id,
            "status": sent.status.value if sent is not None else "UNKNOWN",
            "response": json.loads(answer) if answer and len(answer) <= MAX_OWNER_ANSWER else None,
        }
        log.info(
            "await request not sent: another execution sent its key first",
            extra={
                "action": "await-duplicate",
                "executionId": i.execution_id,
                "ownerExecutionId": owner.execution_id,
            },
        )
        return replace(
            i.completed(response="null", digest="", key=None, actor="tpf", now_ms=now),
            duplicate_of=canonical(document),
        )
