"""Admission: how many await requests are out at once, and sending them.

Requests are reserved before they are sent (the unit's cursor and the tenant's count move in one
transaction), so a crash between the two sends nothing twice that was not reserved; the await
sweeper sends again what a stall suggests was lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from coordinator.awaits.completing import claims_of
from coordinator.awaits.model import AwaitUnit, Interaction, InteractionStatus, UnitStatus
from coordinator.awaits.port import AwaitTable
from coordinator.awaits.transports import Transport, Transports
from tpf.errors import ConfigurationError, StaleRecord
from tpf.queues import Queue
from tpf.settings import Timings
from tpf.signing import Signer

log = logging.getLogger("tpf.coordinator")


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
    ) -> None:
        self.table, self.transports, self.signer = table, transports, signer
        self.timings, self.limits = timings, limits
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
        """Reserve the next requests (unit cursor and tenant count together), then send them."""
        transport = self._transport(unit)
        if transport is None:
            return
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
                        return  # still full; the sweeper comes back at wake_ms
            except StaleRecord:
                fresh = await self.table.get_unit(unit.tenant_id, unit.unit_id)
                if fresh is None or fresh.status is not UnitStatus.OPEN or fresh.complete:
                    return
                unit = fresh
                continue
            if upto > unit.published:
                await self._publish(transport, moved, start=unit.published, stop=upto)
            return

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
        await self._publish(transport, unit, start=0, stop=unit.published)
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
    ) -> None:
        found = await self.table.interactions(unit.tenant_id, unit.unit_id, start=start, stop=stop)
        waiting = [i for i in found if i.status is InteractionStatus.PENDING]
        if waiting:
            await transport.publish(
                unit, waiting, {i.interaction_id: self.token(i) for i in waiting}
            )
