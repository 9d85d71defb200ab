"""The history table on the in-memory fake, moto's server and DynamoDB Local: a dispatch shares
its item with the change it leads to, and every entry reads back in version order."""

from __future__ import annotations

import uuid

import pytest

from coordinator.history import (
    Change,
    DynamoHistoryTable,
    History,
    HistoryTable,
    InMemoryHistoryTable,
)
from coordinator.history.dynamodb import to_item
from tests.substrates import TestStack
from tests.waiting import eventually
from tpf.accounting import RequestLedger
from tpf.dynamodb import serialize
from tpf.records import Status
from tpf.substrate import open_clients


def change(execution_id: str, version: int, status: Status, **fields: object) -> Change:
    return Change(
        tenant_id="acme",
        execution_id=execution_id,
        version=version,
        at_ms=1_700_000_000_000 + version,
        status=status,
        previous=Status.RUNNING if version else None,
        step_index=version // 2,
        attempt=1,
        transition_key=f"{execution_id}:{version // 2}:1",
        **fields,  # type: ignore[arg-type]
    )


def transitions(execution_id: str, count: int) -> list[Change]:
    """``count`` dispatches, each followed by its commit (the last one succeeds)."""
    return [
        change(
            execution_id,
            version,
            Status.RUNNING if version % 2 == 0 else Status.QUEUED,
            worker="w-1" if version % 2 else None,
        )
        for version in range(2 * count)
    ]


async def check(table: HistoryTable) -> None:
    execution_ids = [str(uuid.uuid4()) for _ in range(30)]
    history = History(table)
    for execution_id in execution_ids:
        for c in transitions(execution_id, 2):
            history.record(c)
    await history.close()
    for execution_id in execution_ids:
        assert await history.list("acme", execution_id) == transitions(execution_id, 2)
    assert await history.list("acme", str(uuid.uuid4())) == []

    # A dispatch nothing follows is written once it has waited its hold; an operator's action
    # takes a held dispatch with it, and of a version written twice the later item wins.
    held = str(uuid.uuid4())
    quick = History(table, hold_s=0.05)
    first, _ = transitions(held, 1)
    quick.record(first)
    await eventually(lambda: quick.list("acme", held), timeout=10)
    third = change(held, 2, Status.RUNNING)
    quick.record(third)
    cancelled = change(held, 3, Status.FAILED, actor="ada@ops", reason="not needed")
    await quick.record_now(cancelled)
    await quick.record_now(change(held, 3, Status.FAILED, actor="bob@ops", reason="again"))
    entries = await quick.list("acme", held)
    assert [e.version for e in entries] == [0, 2, 3]
    assert (entries[-1].actor, entries[-1].reason) == ("bob@ops", "again")
    assert await quick.list("acme", held, limit=2) == entries[:2]


async def test_the_in_memory_table_keeps_entries_in_version_order() -> None:
    await check(InMemoryHistoryTable())


@pytest.mark.parametrize("substrate", ["embedded", "localstack"])
async def test_a_transition_is_one_item_and_earlier_items_still_read(
    substrate: str, request: pytest.FixtureRequest
) -> None:
    stack: TestStack = request.getfixturevalue(f"{substrate}_stack")
    ledger = RequestLedger()
    async with open_clients(stack.settings, endpoints=stack.endpoints, ledger=ledger) as aws:
        table = DynamoHistoryTable(aws.dynamodb, stack.settings.resource("history"))
        await check(table)
        snapshot = ledger.snapshot()
        # 60 transitions of 30 executions, each dispatch held for its commit: 60 items, written
        # in three BatchWriteItem calls (25 + 25 + 10), then the held dispatch's and the actions'.
        assert snapshot["requests"]["dynamodb"]["BatchWriteItem"] == 3 + 3
        if substrate == "localstack":
            assert snapshot["dynamodb"]["wru"]["table"] == 60 + 3  # one WRU per item
        # An item an earlier main wrote holds one entry, at the top level, without ``nx``.
        earlier = str(uuid.uuid4())
        for c in transitions(earlier, 1):
            item = to_item((c,))
            assert "nx" not in item
            await aws.dynamodb.put_item(
                TableName=stack.settings.resource("history"), Item=serialize(item)
            )
        assert await table.list("acme", earlier, limit=10) == transitions(earlier, 1)
