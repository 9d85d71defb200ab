"""The awaits table port: ``memory`` is its fake, ``dynamodb`` its adapter.

Recording completions is one transaction per batch of a unit's interactions: each flips
PENDING→COMPLETED under a condition and the unit's ``done`` counter grows by the number flipped
in the same transaction, so a count is never lost or doubled, and the unit item never holds a
set of completed keys (400 KB cap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from coordinator.awaits.model import AwaitUnit, Claim, Inbox, Interaction, UnitStatus

Key = tuple[str, str, int]
"""(tenant, unit id, item index) of an interaction."""


def key_of(i: Interaction) -> Key:
    return (i.tenant_id, i.unit_id, i.item_index)


class AwaitTable(Protocol):
    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        """Interactions, then the unit if absent; False when the unit already existed."""

    async def add_interactions(self, interactions: Sequence[Interaction]) -> None:
        """Interactions of a unit not created yet, each only if absent (a long unit's pages,
        before ``create`` writes the unit with the last of them)."""

    async def get_unit(self, tenant_id: str, unit_id: str) -> AwaitUnit | None: ...

    async def get_units(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], AwaitUnit]:
        """The units of (tenant, unit id) ``keys`` that exist."""

    async def get_interaction(
        self, tenant_id: str, unit_id: str, item_index: int
    ) -> Interaction | None: ...

    async def get_interactions(
        self, keys: Sequence[Key], *, consistent: bool = True
    ) -> dict[Key, Interaction]:
        """The ones that exist, read consistently unless ``consistent=False`` (half the RRU,
        for a reader whose write is conditional anyway)."""

    async def by_correlation(self, correlation_id: str) -> Key | None: ...

    async def interactions(
        self, tenant_id: str, unit_id: str, *, start: int = 0, stop: int | None = None
    ) -> list[Interaction]:
        """Items ``[start, stop)`` of a unit, in order."""

    async def pending(self, tenant_id: str, *, limit: int, where: Inbox) -> list[Interaction]:
        """PENDING interactions of a tenant's inbox matching ``where``, oldest first.

        Answered by index keys (assignee, else group, else the tenant) and filters applied by
        the store, never by reading a fixed number of rows and filtering them here.
        """

    async def record(self, completed: Sequence[Interaction]) -> list[Interaction]:
        """PENDING→COMPLETED of interactions of one unit, counted on the unit atomically.

        Returns those recorded; the others were no longer PENDING or their unit had closed.
        A solo interaction (``Interaction.solo``) is flipped alone, with no count and no look at
        its unit: whether the answer still matters is decided by the execution's record.
        """

    async def advance(self, unit: AwaitUnit, moved: AwaitUnit, *, tenant_limit: int) -> bool:
        """Move ``published``, ``accounted`` and ``wake_ms`` from ``unit``'s to ``moved``'s.

        The tenant's in-flight counter changes by ``moved.accounted - unit.accounted`` in the
        same transaction. StaleRecord when the unit changed meanwhile; False when the tenant's
        counter would pass ``tenant_limit``.
        """

    async def tenant_in_flight(self, tenant_id: str) -> int: ...

    async def close_unit(
        self, tenant_id: str, unit_id: str, status: UnitStatus, *, seen: AwaitUnit | None = None
    ) -> AwaitUnit | None:
        """OPEN→``status``, handing the unit's accounted requests back to its tenant.

        ``seen``, the unit as the caller read it, spares a read when it is still current (the
        write is conditional on it). The closed unit, or None when it was not open.
        """

    async def expire(self, interactions: list[Interaction]) -> None:
        """PENDING→TIMED_OUT (out of the inbox)."""

    async def reindex(self, interactions: Sequence[Interaction]) -> int:
        """Give waiting inbox interactions stored before 2026-12 their assignee and group keys;
        how many changed."""

    async def claim(self, claim: Claim, *, now_ms: int) -> Claim | None:
        """Make ``claim``'s execution own its key; None when it does (the key was free, its
        ownership had ended, or it was already this execution's), else the owner's claim."""

    async def overdue(self, shard: str, *, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """(tenant, unit id) of open units due a look: deadline passed or wake time reached."""
