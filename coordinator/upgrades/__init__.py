"""Upgrades of what a stack stores, run by ``tpf infra up`` once its resources converged.

An upgrade turns items an earlier main wrote into what this code expects (a backfill). Each is
idempotent and made of conditional writes, so it is safe while an older coordinator still
serves and when interrupted; it is recorded in the registry table once it finished and never
runs again. A stack whose tables were just created has nothing to upgrade: its upgrades are
recorded without running.

Adding one: write ``async def run(context) -> int`` (items changed) in a module of this
package, append an ``Upgrade`` with a new id to ``UPGRADES``, and capture a stack of the main
before it (``tests/upgrades/snapshot.py``), so the upgrade test runs it on real items.
"""

from coordinator.upgrades.inbox_keys import inbox_keys
from coordinator.upgrades.ledger import Applied, Upgrade, UpgradeContext, upgrade_stack
from coordinator.upgrades.parked_due import parked_due_times
from coordinator.upgrades.search_lanes import search_lanes
from coordinator.upgrades.wake_times import wake_times

UPGRADES: tuple[Upgrade, ...] = (
    Upgrade(
        "2026-12-parked-due-time",
        "parked executions get a due time, so a lost await unit is repaired",
        parked_due_times,
    ),
    Upgrade(
        "2026-12-inbox-assignee-keys",
        "waiting interactions get the keys the inbox filters by assignee and group Query",
        inbox_keys,
    ),
    Upgrade(
        "2026-12-search-lanes",
        "executions get their search lane, so searches find those created before the index",
        search_lanes,
    ),
    Upgrade(
        "2026-12-due-wake-times",
        "active executions get the wake time the due index is keyed by now",
        wake_times,
    ),
)

__all__ = ["UPGRADES", "Applied", "Upgrade", "UpgradeContext", "upgrade_stack"]
