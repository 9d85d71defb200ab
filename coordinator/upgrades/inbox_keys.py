"""Waiting inbox interactions of a main before 2026-12 have no assignee or group keys: add them.

The inbox filters by ``assignee`` and ``group`` now Query the sparse ``pending-assignee`` and
``pending-group`` indexes (``tpf infra up`` adds them first). An interaction still waiting from
before gets its keys, or a filtered listing would not show it. Waiting interactions belong to
parked executions, so they are found through those (the same Scan as the due-time upgrade).
"""

from __future__ import annotations

from coordinator.upgrades.ledger import UpgradeContext
from tpf.records import Status


async def inbox_keys(context: UpgradeContext) -> int:
    changed, cursor = 0, None
    while True:
        page = await context.store.page(
            statuses=[Status.WAITING_EXTERNAL], limit=100, cursor=cursor
        )
        for record in page.records:
            if record.await_unit_id is not None:
                waiting = await context.awaits.interactions(record.tenant_id, record.await_unit_id)
                changed += await context.awaits.reindex(waiting)
        cursor = page.cursor
        if cursor is None:
            return changed
