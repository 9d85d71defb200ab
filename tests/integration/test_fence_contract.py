"""The worker's fence, one suite on the in-memory store and on DynamoDB (moto's server and
DynamoDB Local): a command may run only while its execution is in flight under the command's
transition key and version; anything else, including an execution that is not there, is stale."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from coordinator.store.memory import InMemoryExecutionTable
from examples.orders import orders
from tests.substrates import TestStack
from tests.unit.commands import StoreFence, first_command
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, Status, new_execution
from tpf.substrate import open_clients
from tpf.wire import TransitionCommand
from worker.fence import DynamoTransitionFence, TransitionFence

NOW = 1_800_000_000_000


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def fenced(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ExecutionStore, TransitionFence]]:
    """The coordinator's store and, over the same records, the worker's fence."""
    if request.param == "memory":
        store = ExecutionStore(InMemoryExecutionTable(shards=4))
        yield store, StoreFence(store)
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    table_name = stack.settings.resource("executions")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        store = ExecutionStore(DynamoExecutionTable(aws.dynamodb, table_name, shards=4))
        yield store, DynamoTransitionFence(aws.dynamodb, table_name)


async def running(store: ExecutionStore) -> ExecutionRecord:
    record = new_execution(
        tenant_id="acme",
        pipeline_id=orders.id,
        idempotency_key=uuid.uuid4().hex,
        contract_version="sha256:" + "ab" * 32,
        release_version="1.0.0",
        input=PayloadRef.of_inline("{}"),
        now_ms=NOW,
    )
    queued = (await store.submit(record, now_ms=NOW)).record
    return await store.dispatch(queued, now_ms=NOW, deadline_ms=NOW + 3_000)


def command_for(record: ExecutionRecord, **changes: object) -> TransitionCommand:
    fields = {
        "tenant_id": record.tenant_id,
        "execution_id": record.execution_id,
        "transition_key": record.transition_key,
        "execution_version": record.version,
        **changes,
    }
    return first_command(orders, {}).model_copy(update=fields)


async def test_the_command_of_the_transition_in_flight_is_live(
    fenced: tuple[ExecutionStore, TransitionFence],
) -> None:
    store, fence = fenced
    record = await running(store)
    assert await fence.is_live(command_for(record))


async def test_another_version_or_transition_key_is_stale(
    fenced: tuple[ExecutionStore, TransitionFence],
) -> None:
    store, fence = fenced
    record = await running(store)
    assert not await fence.is_live(command_for(record, execution_version=record.version - 1))
    assert not await fence.is_live(command_for(record, transition_key=f"{record.execution_id}:0:9"))


async def test_a_finished_or_unknown_execution_is_stale(
    fenced: tuple[ExecutionStore, TransitionFence],
) -> None:
    store, fence = fenced
    record = await running(store)
    command = command_for(record)
    await store.fail(
        record,
        transition_key=record.transition_key,
        status=Status.FAILED,
        error_code="TEST",
        message="ended by the test",
        now_ms=NOW + 1,
    )
    assert not await fence.is_live(command)
    assert not await fence.is_live(command_for(record, execution_id=uuid.uuid4().hex))
