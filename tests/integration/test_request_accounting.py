from __future__ import annotations

import uuid

import pytest

from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from tests.substrates import TestStack
from tpf.accounting import RequestLedger
from tpf.errors import StaleRecord
from tpf.payloads import PayloadRef
from tpf.records import new_execution
from tpf.substrate import open_clients


@pytest.fixture(params=["embedded", "localstack"])
def stack(request: pytest.FixtureRequest) -> TestStack:
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    return stack


async def test_every_call_is_counted_with_capacity_and_failed_conditions(stack: TestStack) -> None:
    ledger = RequestLedger()
    async with open_clients(stack.settings, endpoints=stack.endpoints, ledger=ledger) as aws:
        store = ExecutionStore(
            DynamoExecutionTable(aws.dynamodb, stack.settings.resource("executions"), shards=4)
        )
        record = new_execution(
            tenant_id="acme",
            pipeline_id="p",
            idempotency_key=uuid.uuid4().hex,
            contract_version="sha256:" + "0" * 64,
            release_version="1",
            input=PayloadRef.of_inline("{}"),
            now_ms=1,
        )
        await store.submit(record, now_ms=1)
        running = await store.dispatch(record, now_ms=1, deadline_ms=5)
        with pytest.raises(StaleRecord):
            await store.dispatch(record, now_ms=1, deadline_ms=5)
        await store.get(*running.key)
        await aws.sqs.list_queues(QueueNamePrefix=stack.settings.stack)

    snapshot = ledger.snapshot()
    assert snapshot["requests"]["dynamodb"] == {"PutItem": 3, "GetItem": 1}
    assert snapshot["requests"]["sqs"] == {"ListQueues": 1}
    assert snapshot["dynamodb"]["failed_conditional_writes"] == 1
    assert snapshot["sqs"]["billed_chunks"] == 1
    if stack.substrate == "localstack":
        # DynamoDB Local reports real capacity (moto's is not reliable): a record under 1 KB
        # costs one WRU per write, and the dispatch that moved the due-index key costs index WRU.
        assert snapshot["dynamodb"]["wru"]["table"] == 2.0
        assert snapshot["dynamodb"]["wru"]["indexes"] >= 1.0
        assert snapshot["dynamodb"]["rru"]["table"] == 1.0


def test_snapshots_of_several_processes_add_up() -> None:
    one = {
        "requests": {"sqs": {"SendMessageBatch": 2}},
        "sqs": {"billed_chunks": 2},
        "dynamodb": {"wru": {"table": 1.0, "indexes": 2.0}, "failed_conditional_writes": 1},
    }
    merged = RequestLedger.merge([one, one])
    assert merged["requests"]["sqs"]["SendMessageBatch"] == 4
    assert merged["dynamodb"]["wru"] == {"table": 2.0, "indexes": 4.0}
    assert merged["dynamodb"]["failed_conditional_writes"] == 2
