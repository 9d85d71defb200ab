"""The search part of the execution store contract, on the fake, moto's server and DynamoDB Local.

Each test searches a tenant of its own, so the shared stacks' other executions never show.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.store import ExecutionStore
from coordinator.store.memory import InMemoryExecutionTable
from coordinator.store.search import ExecutionQuery, SearchPage, UnsupportedSearch
from tests.substrates import TestStack
from tests.waiting import eventually
from tpf.dynamodb import serialize
from tpf.errors import InvalidInput
from tpf.payloads import PayloadRef
from tpf.records import (
    SEARCH_INDEX,
    SEARCH_LANE,
    ExecutionRecord,
    Status,
    new_execution,
    partition_key,
    to_item,
)
from tpf.substrate import sync_client

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000_000
CONTRACT = "sha256:" + "ab" * 32


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def submitted(
    tenant_id: str, created_ms: int, pipeline: str = "org.example.orders"
) -> ExecutionRecord:
    return new_execution(
        tenant_id=tenant_id,
        pipeline_id=pipeline,
        idempotency_key=uuid.uuid4().hex,
        contract_version=CONTRACT,
        release_version="1.0.0",
        input=PayloadRef.of_inline("{}"),
        now_ms=created_ms,
        dispatch_deadline_ms=created_ms + 3_000,
    )


async def settle(
    store: ExecutionStore, record: ExecutionRecord, status: Status, code: str = "BOOM"
) -> ExecutionRecord:
    if status is Status.SUCCEEDED:
        return await store.succeed(
            record,
            transition_key=record.transition_key or "",
            result=PayloadRef.of_inline("1"),
            now_ms=record.created_at_ms + 1,
        )
    return await store.fail(
        record,
        transition_key=record.transition_key,
        status=status,
        error_code=code,
        message="failed",
        now_ms=record.created_at_ms + 1,
    )


async def every_page(store: ExecutionStore, query: ExecutionQuery) -> list[list[str]]:
    """The ids of each page, following the cursor to the end."""
    pages, cursor = [], None
    while True:
        page: SearchPage = await store.search(query, cursor)
        pages.append([r.execution_id for r in page.records])
        cursor = page.cursor
        if cursor is None:
            return pages


async def found(store: ExecutionStore, query: ExecutionQuery) -> list[str]:
    return [e for page in await every_page(store, query) for e in page]


async def indexed(store: ExecutionStore, query: ExecutionQuery, count: int) -> list[str]:
    """What the search finds once the index holds ``count`` of the query's executions (GSIs are
    eventually consistent)."""

    async def complete() -> list[str] | None:
        ids = await found(store, query)
        return ids if len(ids) >= count else None

    result = await eventually(complete, timeout=15)
    assert result is not None
    return result


async def test_a_tenants_executions_come_newest_first_page_by_page(
    execution_store: ExecutionStore,
) -> None:
    t = tenant()
    records = [submitted(t, NOW + i * 1_000) for i in range(7)]
    for record in records:
        await execution_store.submit(record, now_ms=record.created_at_ms)
    await settle(execution_store, records[2], Status.DLQ)
    await settle(execution_store, records[4], Status.SUCCEEDED)
    newest_first = [r.execution_id for r in reversed(records)]
    query = ExecutionQuery(t, limit=3)

    assert await indexed(execution_store, query, 7) == newest_first
    pages = await every_page(execution_store, query)
    assert [len(p) for p in pages[:2]] == [3, 3]
    assert [e for p in pages for e in p] == newest_first
    await execution_store.submit(submitted(tenant(), NOW), now_ms=NOW)  # another tenant's
    assert await found(execution_store, ExecutionQuery(t, limit=50)) == newest_first


async def test_failures_are_found_by_status_and_error_code(
    execution_store: ExecutionStore,
) -> None:
    t = tenant()
    records = [submitted(t, NOW + i) for i in range(5)]
    for record in records:
        await execution_store.submit(record, now_ms=record.created_at_ms)
    dead = await settle(execution_store, records[0], Status.DLQ, "TRANSITION_TIMEOUT")
    failed = await settle(execution_store, records[1], Status.FAILED, "INVALID_ORDER")
    done = await settle(execution_store, records[2], Status.SUCCEEDED)
    await indexed(execution_store, ExecutionQuery(t, frozenset({Status.FAILED, Status.DLQ})), 2)

    def query(*statuses: Status, code: str | None = None) -> ExecutionQuery:
        return ExecutionQuery(t, frozenset(statuses), error_code=code)

    assert await found(execution_store, query(Status.DLQ)) == [dead.execution_id]
    assert await found(execution_store, query(Status.FAILED, Status.DLQ)) == [
        failed.execution_id,
        dead.execution_id,
    ]
    assert await found(execution_store, query(code="INVALID_ORDER")) == [failed.execution_id]
    assert await found(execution_store, query(Status.DLQ, code="INVALID_ORDER")) == []
    assert await found(execution_store, query(Status.SUCCEEDED)) == [done.execution_id]
    running = await found(execution_store, query(Status.RUNNING))
    assert running == [records[4].execution_id, records[3].execution_id]
    with pytest.raises(UnsupportedSearch) as refused:
        query(Status.RUNNING, code="BOOM")
    assert "errorCode with status FAILED or DLQ" in str(refused.value)
    with pytest.raises(InvalidInput):
        ExecutionQuery(t, limit=0)


async def test_the_creation_time_range_and_the_pipeline_narrow_a_search(
    execution_store: ExecutionStore,
) -> None:
    t = tenant()
    records = [
        submitted(t, NOW + i * 1_000, "org.example.shop" if i % 2 else "org.example.orders")
        for i in range(6)
    ]
    for record in records:
        await execution_store.submit(record, now_ms=record.created_at_ms)
    await indexed(execution_store, ExecutionQuery(t), 6)

    window = ExecutionQuery(t, since_ms=NOW + 1_000, until_ms=NOW + 4_000)
    assert await found(execution_store, window) == [r.execution_id for r in records[3:0:-1]]
    shop = ExecutionQuery(t, pipeline_id="org.example.shop", limit=2)
    assert await found(execution_store, shop) == [r.execution_id for r in records[5::-2]]


async def test_a_cursor_is_refused_when_forged_or_used_with_other_filters(
    execution_store: ExecutionStore,
) -> None:
    t = tenant()
    for i in range(3):
        await execution_store.submit(submitted(t, NOW + i), now_ms=NOW + i)
    query = ExecutionQuery(t, limit=1)
    await indexed(execution_store, query, 3)
    cursor = (await execution_store.search(query)).cursor
    assert cursor is not None

    for forged in ("x", cursor[:-2], cursor + "A", "e30", "!" * 10, "A" * 600):
        with pytest.raises(InvalidInput) as refused:
            await execution_store.search(query, forged)
        assert refused.value.pointer == "/cursor"
    with pytest.raises(InvalidInput):
        await execution_store.search(ExecutionQuery(t, frozenset({Status.DLQ}), limit=1), cursor)
    with pytest.raises(InvalidInput):
        await execution_store.search(ExecutionQuery(tenant(), limit=1), cursor)


async def test_a_record_written_before_the_index_is_found_once_given_its_keys(
    execution_store: ExecutionStore,
) -> None:
    t = tenant()
    record = submitted(t, NOW)
    await write_without_search_keys(execution_store, record)
    query = ExecutionQuery(t)
    assert await found(execution_store, query) == []

    assert await execution_store.table.add_search_keys(record)
    assert not await execution_store.table.add_search_keys(record)  # already has them
    assert await indexed(execution_store, query, 1) == [record.execution_id]
    assert await execution_store.get(*record.key) == record

    moved_on = submitted(t, NOW + 1)
    await write_without_search_keys(execution_store, moved_on)
    stale = moved_on.change(status=Status.QUEUED)  # read before the status changed
    assert not await execution_store.table.add_search_keys(stale)


async def write_without_search_keys(store: ExecutionStore, record: ExecutionRecord) -> None:
    """An item as a main before the search index wrote it."""
    item = to_item(record, shards=4)
    del item[SEARCH_LANE]
    table = store.table
    if isinstance(table, InMemoryExecutionTable):
        table.items[partition_key(*record.key)] = item
        return
    await table.client.put_item(TableName=table.table_name, Item=serialize(item))


POSITIONS = st.one_of(
    st.none(),
    st.tuples(
        st.one_of(st.integers(-(10**14), 10**14), st.sampled_from([NOW - 1, NOW, NOW + 5_000])),
        st.one_of(st.text(max_size=70), st.uuids().map(str), st.just("-")),
    ).map(list),
)


@settings(max_examples=40, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(["E", "F"]), POSITIONS, max_size=2))
async def test_a_cursor_made_to_look_genuine_is_a_page_or_invalid_input_never_an_aws_error(
    execution_store: ExecutionStore, at: dict[str, Any]
) -> None:
    # A cursor's checksum only ties it to its query; anyone can compute it, so a position
    # DynamoDB would refuse (outside the query's time range) must be refused before the Query.
    query = ExecutionQuery("acme", since_ms=NOW, until_ms=NOW + 5_000, limit=2)
    document = {"q": query.fingerprint(), "at": at}
    cursor = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()
    try:
        page = await execution_store.search(query, cursor)
    except InvalidInput as refused:
        assert refused.pointer == "/cursor"
    else:
        assert len(page.records) <= 2


async def test_the_search_index_costs_one_wru_at_submit_and_two_per_move_between_lanes(
    localstack_stack: TestStack,
) -> None:
    # DynamoDB Local reports the capacity of each index as AWS bills it (moto's is not reliable).
    # The items are what the adapter puts for each change of an approval that is dead-lettered,
    # re-driven and then succeeds.
    store = ExecutionStore(InMemoryExecutionTable(shards=4))
    record = submitted(tenant(), NOW)
    await store.submit(record, now_ms=NOW)
    changes = [record]
    changes.append(
        await store.park(
            record,
            transition_key=record.transition_key or "",
            await_unit_id="unit-1",
            step_index=1,
            continuation=None,
            now_ms=NOW + 1,
            due_at_ms=NOW + 9_000,
        )
    )
    changes.append(
        await store.resume(
            changes[-1],
            await_unit_id="unit-1",
            step_index=2,
            continuation=PayloadRef.of_inline("{}"),
            now_ms=NOW + 2,
        )
    )
    changes.append(await store.dispatch(changes[-1], now_ms=NOW + 3, deadline_ms=NOW + 5_000))
    changes.append(await settle(store, changes[-1], Status.DLQ))
    changes.append(await store.redrive(changes[-1], now_ms=NOW + 4, actor="ops"))
    changes.append(await store.dispatch(changes[-1], now_ms=NOW + 5, deadline_ms=NOW + 6_000))
    changes.append(await settle(store, changes[-1], Status.SUCCEEDED))

    settings = localstack_stack.settings
    ddb = sync_client(settings, "dynamodb", endpoints=localstack_stack.endpoints)
    spent = []
    for change in changes:
        consumed = ddb.put_item(
            TableName=settings.resource("executions"),
            Item=serialize(to_item(change, shards=4)),
            ReturnConsumedCapacity="INDEXES",
        )["ConsumedCapacity"]
        indexes = consumed.get("GlobalSecondaryIndexes", {})
        spent.append((change.status.value, indexes.get(SEARCH_INDEX, {}).get("CapacityUnits", 0)))
    assert spent == [
        ("RUNNING", 1),  # submitted: the entry is written once
        ("WAITING_EXTERNAL", 0),
        ("QUEUED", 0),
        ("RUNNING", 0),
        ("DLQ", 2),  # into the failures lane: a delete and a put
        ("QUEUED", 2),  # re-driven: back again
        ("RUNNING", 0),
        ("SUCCEEDED", 0),
    ]
