"""Executions written by a main before 2026-12 have a due time but no wake time: give them one.

The due index is keyed by the wake time ``wk`` now, a lower bound of the due time ``dt``
(``tpf.records``), so a record of an earlier main is invisible to the sweeper until it has
one. Each active record with a due time gets its due time as its wake time, by an update
conditional on the wake time still being absent, so a record a coordinator changed meanwhile
keeps the one it wrote, and a second run changes nothing. Finding them takes a Scan of the
executions table, once per stack.
"""

from __future__ import annotations

from coordinator.upgrades.ledger import UpgradeContext
from tpf.records import ACTIVE


async def wake_times(context: UpgradeContext) -> int:
    changed, cursor = 0, None
    while True:
        page = await context.store.page(statuses=ACTIVE, limit=100, cursor=cursor)
        for record in page.records:
            if record.due_at_ms is None or record.wake_at_ms is not None:
                continue
            if await context.store.rewake(record):
                changed += 1
        cursor = page.cursor
        if cursor is None:
            return changed
