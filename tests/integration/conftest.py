from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from coordinator.store.memory import InMemoryExecutionTable
from tests.substrates import TestStack
from tpf.payloads import PayloadStore
from tpf.payloads.dynamodb_s3 import DynamoS3PayloadBackend
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.substrate import open_clients


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def execution_store(request: pytest.FixtureRequest) -> AsyncIterator[ExecutionStore]:
    """The same store contract on the in-memory fake, moto's server and DynamoDB Local."""
    if request.param == "memory":
        yield ExecutionStore(InMemoryExecutionTable(shards=4))
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        table = DynamoExecutionTable(aws.dynamodb, stack.settings.resource("executions"), shards=4)
        yield ExecutionStore(table)


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def payload_store(request: pytest.FixtureRequest) -> AsyncIterator[PayloadStore]:
    if request.param == "memory":
        yield PayloadStore(InMemoryPayloadBackend())
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        yield PayloadStore(
            DynamoS3PayloadBackend(
                aws.dynamodb,
                aws.s3,
                table=stack.settings.resource("payloads"),
                bucket=stack.settings.resource("payloads"),
                ttl_s=3600,
            )
        )
