"""The awaits table in memory: the fake the unit tests and the embedded substrate use."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from coordinator.awaits.model import (
    AwaitUnit,
    Claim,
    Inbox,
    Interaction,
    InteractionStatus,
    UnitStatus,
    carried_unit,
    deadline_shard,
)
from coordinator.awaits.port import Key, key_of
from tpf.errors import StaleRecord


class InMemoryAwaitTable:
    def __init__(self, *, shards: int = 4) -> None:
        self.shards = shards
        self.units: dict[tuple[str, str], AwaitUnit] = {}
        self.items: dict[Key, Interaction] = {}
        self.in_flight: dict[str, int] = {}
        self.claims: dict[tuple[str, str, str], Claim] = {}
        self.lock = asyncio.Lock()

    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        async with self.lock:
            if unit.carried:
                [carrier] = interactions
                if key_of(carrier) in self.items:
                    return False
                self.items[key_of(carrier)] = carrier
                return True
            if (unit.tenant_id, unit.unit_id) in self.units:
                return False
            for i in interactions:
                self.items.setdefault(key_of(i), i)  # a second opener never rewrites one
            self.units[(unit.tenant_id, unit.unit_id)] = unit
            return True

    def uncarry(self, tenant_id: str, unit_id: str, **changes: object) -> AwaitUnit:
        """Store a carried unit as mains before 2026-12 stored every unit, as an item of its
        own, with ``changes``: how tests stage a unit an earlier main opened."""
        carrier = self.items[(tenant_id, unit_id, 0)]
        unit = replace(carried_unit(carrier), carried=False, **changes)  # type: ignore[arg-type]
        self.items[key_of(carrier)] = replace(carrier, carries=None)
        self.units[(tenant_id, unit_id)] = unit
        return unit

    async def add_interactions(self, interactions: Sequence[Interaction]) -> None:
        async with self.lock:
            for i in interactions:
                self.items.setdefault(key_of(i), i)

    async def get_unit(self, tenant_id: str, unit_id: str) -> AwaitUnit | None:
        carrier = self.items.get((tenant_id, unit_id, 0))
        if (tenant_id, unit_id) not in self.units and carrier and carrier.carries:
            return carried_unit(carrier)
        return self.units.get((tenant_id, unit_id))

    async def get_units(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], AwaitUnit]:
        return {k: self.units[k] for k in keys if k in self.units}

    async def get_interaction(
        self, tenant_id: str, unit_id: str, item_index: int
    ) -> Interaction | None:
        return self.items.get((tenant_id, unit_id, item_index))

    async def get_interactions(
        self, keys: Sequence[Key], *, consistent: bool = True
    ) -> dict[Key, Interaction]:
        return {k: self.items[k] for k in keys if k in self.items}

    async def by_correlation(self, correlation_id: str) -> Key | None:
        return next((k for k, i in self.items.items() if i.correlation_id == correlation_id), None)

    async def interactions(
        self, tenant_id: str, unit_id: str, *, start: int = 0, stop: int | None = None
    ) -> list[Interaction]:
        found = [
            i
            for (t, u, n), i in self.items.items()
            if (t, u) == (tenant_id, unit_id) and n >= start and (stop is None or n < stop)
        ]
        return sorted(found, key=lambda i: i.item_index)

    async def pending(self, tenant_id: str, *, limit: int, where: Inbox) -> list[Interaction]:
        found = [
            i
            for i in self.items.values()
            if i.tenant_id == tenant_id
            and i.status is InteractionStatus.PENDING
            and i.inbox
            and where.wants(i)
        ]
        return sorted(found, key=lambda i: (i.created_at_ms, i.interaction_id))[:limit]

    async def record(self, completed: Sequence[Interaction]) -> list[Interaction]:
        async with self.lock:
            recorded = []
            for i in completed:
                unit = self.units.get((i.tenant_id, i.unit_id))
                current = self.items.get(key_of(i))
                if current is None or current.status is not InteractionStatus.PENDING:
                    continue
                if i.solo:  # one conditional write: no unit, no count
                    self.items[key_of(i)] = i
                    recorded.append(i)
                    continue
                if unit is None or unit.status is not UnitStatus.OPEN:
                    continue
                self.items[key_of(i)] = i
                self.units[(i.tenant_id, i.unit_id)] = replace(unit, done=unit.done + 1)
                recorded.append(i)
            return recorded

    async def advance(self, unit: AwaitUnit, moved: AwaitUnit, *, tenant_limit: int) -> bool:
        async with self.lock:
            current = self.units.get((unit.tenant_id, unit.unit_id))
            if (
                current is None
                or current.status is not UnitStatus.OPEN
                or (current.published, current.accounted) != (unit.published, unit.accounted)
            ):
                raise StaleRecord("the unit moved on", current=current)
            delta = moved.accounted - unit.accounted
            counted = self.in_flight.get(unit.tenant_id, 0)
            if delta > 0 and counted + delta > tenant_limit:
                return False
            self.in_flight[unit.tenant_id] = counted + delta
            self.units[(unit.tenant_id, unit.unit_id)] = replace(
                current,
                published=moved.published,
                accounted=moved.accounted,
                wake_ms=moved.wake_ms,
            )
            return True

    async def tenant_in_flight(self, tenant_id: str) -> int:
        return self.in_flight.get(tenant_id, 0)

    async def close_unit(
        self, tenant_id: str, unit_id: str, status: UnitStatus, *, seen: AwaitUnit | None = None
    ) -> AwaitUnit | None:
        async with self.lock:
            current = await self.get_unit(tenant_id, unit_id)
            if current is None or current.status is not UnitStatus.OPEN:
                return None
            if current.carried:  # answered, it is complete already; else out of the inbox
                carrier = self.items[(tenant_id, unit_id, 0)]
                if (
                    status is UnitStatus.COMPLETED
                    or carrier.status is not InteractionStatus.PENDING
                ):
                    return None
                assert carrier.carries is not None
                carries = replace(carrier.carries, closed=status)
                self.items[key_of(carrier)] = replace(
                    carrier, status=InteractionStatus.TIMED_OUT, carries=carries
                )
                return replace(current, status=status)
            self.in_flight[tenant_id] = self.in_flight.get(tenant_id, 0) - current.accounted
            done = current.total if status is UnitStatus.COMPLETED else current.done
            closed = replace(current, status=status, accounted=0, wake_ms=None, done=done)
            self.units[(tenant_id, unit_id)] = closed
            return closed

    async def expire(self, interactions: list[Interaction]) -> None:
        for i in interactions:
            if self.items[key_of(i)].status is InteractionStatus.PENDING:
                self.items[key_of(i)] = replace(i, status=InteractionStatus.TIMED_OUT)

    async def overdue(self, shard: str, *, now_ms: int, limit: int) -> list[tuple[str, str]]:
        found = [
            u
            for u in self.units.values()
            if u.status is UnitStatus.OPEN
            and not u.watched
            and u.look_at_ms <= now_ms
            and deadline_shard(u.unit_id, self.shards) == shard
        ]
        found.sort(key=lambda u: u.look_at_ms)
        return [(u.tenant_id, u.unit_id) for u in found[:limit]]

    async def reindex(self, interactions: Sequence[Interaction]) -> int:
        return 0  # listings read the requests themselves

    async def claim(self, claim: Claim, *, now_ms: int) -> Claim | None:
        async with self.lock:
            key = (claim.tenant_id, claim.step_id, claim.key)
            owner = self.claims.get(key)
            if owner is None or owner.execution_id == claim.execution_id or owner.until_ms < now_ms:
                self.claims[key] = claim
                return None
            return owner
