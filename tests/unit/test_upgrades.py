"""The upgrade ledger and the stored-data backfills, over the in-memory fakes."""

from __future__ import annotations

from coordinator.store.port import Guard
from coordinator.store.search import ExecutionQuery
from coordinator.testing import InMemoryCoordinator
from coordinator.upgrades import UPGRADES, Upgrade, UpgradeContext, upgrade_stack
from coordinator.upgrades.parked_due import parked_due_times
from coordinator.upgrades.search_lanes import search_lanes
from examples.restaurant_approval import restaurant_approval
from tests.unit.test_awaits import parked
from tpf.records import SEARCH_LANE, ExecutionRecord, Status, partition_key
from tpf.registry.memory import InMemoryRegistryTable

NOW = 5_000_000


async def coordinator() -> InMemoryCoordinator:
    c = InMemoryCoordinator.create()
    await c.register(restaurant_approval)
    return c


def context(c: InMemoryCoordinator) -> UpgradeContext:
    return UpgradeContext(
        store=c.store, awaits=c.await_table, timings=c.settings.timings, now_ms=NOW
    )


async def as_an_earlier_main_parked_it(c: InMemoryCoordinator, key: str) -> ExecutionRecord:
    """A parked record with no due time, as mains before 2026-12 wrote it."""
    execution_id, _ = await parked(c, key)
    record = await c.service.status("acme", execution_id)
    earlier = record.change(due_at_ms=None)
    waiting = frozenset({Status.WAITING_EXTERNAL})
    await c.table.replace(earlier, Guard(version=record.version, statuses=waiting))
    return earlier


async def test_each_upgrade_runs_once_and_a_fresh_stack_only_records_them() -> None:
    runs: list[str] = []

    async def counted(_: UpgradeContext) -> int:
        runs.append("ran")
        return 3

    upgrades = (Upgrade("u1", "one", counted), Upgrade("u2", "two", counted))
    c, ledger = await coordinator(), InMemoryRegistryTable()
    first = await upgrade_stack(upgrades, context(c), ledger, fresh=False)
    assert [(a.id, a.changed, a.ran) for a in first] == [("u1", 3, True), ("u2", 3, True)]
    assert await upgrade_stack(upgrades, context(c), ledger, fresh=False) == []
    assert len(runs) == 2

    fresh = await upgrade_stack(upgrades, context(c), InMemoryRegistryTable(), fresh=True)
    assert [(a.id, a.ran) for a in fresh] == [("u1", False), ("u2", False)]
    assert len(runs) == 2


async def test_parked_records_without_a_due_time_get_one() -> None:
    c = await coordinator()
    with_unit = await as_an_earlier_main_parked_it(c, "a")
    unit = await c.await_table.get_unit("acme", with_unit.await_unit_id or "")
    assert unit is not None
    without_unit = await as_an_earlier_main_parked_it(c, "b")
    # Lost, never opened.
    del c.await_table.items[("acme", without_unit.await_unit_id or "", 0)]
    current, _ = await parked(c, "c")  # parked by this main: has its own due time
    before = await c.service.status("acme", current)

    assert await parked_due_times(context(c)) == 2
    grace = int(c.settings.timings.await_stall.total_seconds() * 1000)
    upgraded = await c.service.status("acme", with_unit.execution_id)
    assert upgraded.due_at_ms == unit.deadline_ms + grace
    assert upgraded.version == with_unit.version  # not a change of state
    assert (await c.service.status("acme", without_unit.execution_id)).due_at_ms == NOW
    assert await c.service.status("acme", current) == before
    assert await parked_due_times(context(c)) == 0  # idempotent


def test_upgrade_ids_are_unique() -> None:
    ids = [u.id for u in UPGRADES]
    assert len(ids) == len(set(ids))


async def test_records_without_a_search_lane_get_the_lane_of_their_status() -> None:
    c = await coordinator()
    waiting, _ = await parked(c, "a")
    settled, _ = await parked(c, "b")
    await c.operations.cancel("acme", settled, actor="ops", now_ms=NOW, reason="withdrawn")
    for execution_id in (waiting, settled):
        del c.table.items[partition_key("acme", execution_id)][SEARCH_LANE]  # an earlier main's
    indexed, _ = await parked(c, "c")  # written by this main: has its lane
    everything = ExecutionQuery("acme")
    assert [r.execution_id for r in (await c.store.search(everything)).records] == [indexed]

    assert await search_lanes(context(c)) == 2
    found = (await c.store.search(everything)).records
    assert {r.execution_id for r in found} == {waiting, settled, indexed}
    failures = ExecutionQuery("acme", frozenset({Status.FAILED}))
    assert [r.execution_id for r in (await c.store.search(failures)).records] == [settled]
    assert await search_lanes(context(c)) == 0  # idempotent
