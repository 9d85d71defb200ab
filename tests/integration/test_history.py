"""The history table on the in-memory fake, moto's server and DynamoDB Local."""

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
from tests.substrates import TestStack
from tpf.accounting import RequestLedger
from tpf.records import Status
from tpf.substrate import open_clients


def change(execution_id: str, version: int, **fields: object) -> Change:
    return Change(
        tenant_id="acme",
        execution_id=execution_id,
        version=version,
        at_ms=1_700_000_000_000 + version,
        status=Status.RUNNING,
        previous=Status.QUEUED if version else None,
        step_index=version // 3,
        attempt=1,
        transition_key=f"{execution_id}:{version // 3}:1",
        **fields,  # type: ignore[arg-type]
    )


async def check(table: HistoryTable) -> None:
    execution_id = str(uuid.uuid4())
    history = History(table)
    for version in range(30):
        history.record(change(execution_id, version, worker="w-1" if version % 2 else None))
    await history.close()
    # Operator actions carry who and why; writing a version twice keeps one entry.
    await history.record_now(change(execution_id, 29, actor="ada@ops", reason="fixed upstream"))

    entries = await history.list("acme", execution_id)
    assert [e.version for e in entries] == list(range(30))
    assert entries[0] == change(execution_id, 0)
    assert entries[1] == change(execution_id, 1, worker="w-1")
    assert (entries[-1].actor, entries[-1].reason) == ("ada@ops", "fixed upstream")
    assert await history.list("acme", str(uuid.uuid4())) == []


async def test_the_in_memory_table_keeps_entries_in_version_order() -> None:
    await check(InMemoryHistoryTable())


@pytest.mark.parametrize("substrate", ["embedded", "localstack"])
async def test_entries_are_batched_and_counted(
    substrate: str, request: pytest.FixtureRequest
) -> None:
    stack: TestStack = request.getfixturevalue(f"{substrate}_stack")
    ledger = RequestLedger()
    async with open_clients(stack.settings, endpoints=stack.endpoints, ledger=ledger) as aws:
        await check(DynamoHistoryTable(aws.dynamodb, stack.settings.resource("history")))
    snapshot = ledger.snapshot()
    # 30 entries written off the commit path in two BatchWriteItem calls (25 + 5), then one.
    assert snapshot["requests"]["dynamodb"]["BatchWriteItem"] == 3
    if substrate == "localstack":
        assert snapshot["dynamodb"]["wru"]["table"] == 31.0  # one WRU per small entry
