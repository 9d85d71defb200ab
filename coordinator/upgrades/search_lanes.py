"""Executions written by a main before 2026-12 have no search lane: give them one.

The search index (``coordinator.store.search``) is keyed by the lane attribute ``sl``, which
earlier mains did not write, so their executions are in the table but not in the index. Each
gets the lane of its status by an update of that one attribute, conditional on the status it
was computed from and on the lane still being absent: a record a coordinator changed meanwhile
is left as it is (one of this main wrote its lane), and a second run changes nothing. Finding
them takes a Scan of the executions table, once per stack. Records an older coordinator still
writes after the upgrade have no lane again, which is why ``tpf infra up`` comes before the new
coordinators are started.
"""

from __future__ import annotations

from coordinator.upgrades.ledger import UpgradeContext


async def search_lanes(context: UpgradeContext) -> int:
    changed, cursor = 0, None
    while True:
        page = await context.store.page(limit=100, cursor=cursor)
        for record in page.records:
            if await context.store.add_search_keys(record):
                changed += 1
        cursor = page.cursor
        if cursor is None:
            return changed
