"""Parked executions of a main before 2026-12 have no due time: give them one.

The due time is what the sweeper now relies on to repair an await unit that never opened. A
record whose unit exists is due a grace after the unit's deadline, as if it had just parked;
one whose unit is missing is due now, so the sweeper dead-letters it (a re-drive runs its
step again). Finding them takes a Scan of the executions table, once per stack.
"""

from __future__ import annotations

from coordinator.upgrades.ledger import UpgradeContext
from tpf.errors import StaleRecord
from tpf.records import Status


async def parked_due_times(context: UpgradeContext) -> int:
    grace_ms = int(context.timings.await_stall.total_seconds() * 1000)
    changed, cursor = 0, None
    while True:
        page = await context.store.page(
            statuses=[Status.WAITING_EXTERNAL], limit=100, cursor=cursor
        )
        for record in page.records:
            if record.due_at_ms is not None or record.await_unit_id is None:
                continue
            unit = await context.awaits.get_unit(record.tenant_id, record.await_unit_id)
            due = unit.deadline_ms + grace_ms if unit is not None else context.now_ms
            try:
                await context.store.keep_waiting(record, due_at_ms=due)
            except StaleRecord:
                continue  # it moved on meanwhile, with a due time of its own
            changed += 1
        cursor = page.cursor
        if cursor is None:
            return changed
