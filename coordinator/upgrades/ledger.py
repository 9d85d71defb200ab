"""Running the upgrades a stack has not had yet, and remembering the ones it had."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from coordinator.awaits import AwaitTable
from coordinator.store import ExecutionStore
from tpf.registry.port import RegistryTable
from tpf.settings import Timings

log = logging.getLogger("tpf.upgrades")

LEDGER = "stack"
"""The registry partition holding one item per applied upgrade (``upgrade#<id>``)."""


@dataclass(frozen=True)
class UpgradeContext:
    store: ExecutionStore
    awaits: AwaitTable
    timings: Timings
    now_ms: int


@dataclass(frozen=True)
class Upgrade:
    id: str
    summary: str
    run: Callable[[UpgradeContext], Awaitable[int]]
    """Applies the upgrade; returns how many items it changed."""


@dataclass(frozen=True)
class Applied:
    id: str
    summary: str
    changed: int
    ran: bool
    """False on a fresh stack: recorded as applied, with nothing to change."""


async def upgrade_stack(
    upgrades: Sequence[Upgrade],
    context: UpgradeContext,
    ledger: RegistryTable,
    *,
    fresh: bool,
) -> list[Applied]:
    """Apply, in order, each upgrade the ledger does not list; returns what was applied."""
    applied = []
    for upgrade in upgrades:
        key = f"upgrade#{upgrade.id}"
        if await ledger.get(LEDGER, key) is not None:
            continue
        changed = 0 if fresh else await upgrade.run(context)
        entry = {"summary": upgrade.summary, "changed": changed, "at": context.now_ms}
        await ledger.put_new(LEDGER, key, {**entry, "ran": not fresh})
        applied.append(Applied(upgrade.id, upgrade.summary, changed, ran=not fresh))
        log.info(
            "upgrade applied",
            extra={"action": "upgrade", "upgrade": upgrade.id, "changed": changed},
        )
    return applied
