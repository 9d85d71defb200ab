"""The work queues contract, one suite on the in-memory fake, moto's server and LocalStack: each
release of a pipeline has a queue of its own, created on demand and idempotently, and retiring
a release takes its queue and whatever waited in it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from coordinator.routing import InMemoryWorkQueues, SqsWorkQueues, WorkQueues
from tests.substrates import TestStack
from tests.waiting import eventually
from tpf.queues import Outgoing, Queue
from tpf.substrate import open_clients


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def work(request: pytest.FixtureRequest) -> AsyncIterator[WorkQueues]:
    if request.param == "memory":
        yield InMemoryWorkQueues()
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        yield SqsWorkQueues(aws.sqs, stack.settings, stack.endpoints)


@pytest.fixture
def pipeline() -> str:
    return f"org.tests.contract{uuid.uuid4().hex[:8]}"


async def bodies(queue: Queue, count: int) -> set[str]:
    found: dict[str, str] = {}

    async def enough() -> bool:
        for message in await queue.receive(max_messages=10, wait_s=1):
            found[message.message_id] = message.body
            await queue.delete(message.receipt)
        return len(found) >= count

    await eventually(enough, timeout=15, interval=0)
    return set(found.values())


async def test_a_created_release_queue_carries_commands(work: WorkQueues, pipeline: str) -> None:
    await work.create(pipeline, "1.0.0")
    await work.create(pipeline, "1.0.0")  # activation may run twice
    queue = await work.for_release(pipeline, "1.0.0")
    await queue.send(Outgoing("command"))
    assert await bodies(await work.for_release(pipeline, "1.0.0"), 1) == {"command"}
    await work.retire(pipeline, "1.0.0")


async def test_two_releases_of_a_pipeline_have_queues_of_their_own(
    work: WorkQueues, pipeline: str
) -> None:
    old, new = await work.for_release(pipeline, "1.0.0"), await work.for_release(pipeline, "2.0.0")
    await old.send(Outgoing("for 1.0.0"))
    await new.send(Outgoing("for 2.0.0"))
    assert await bodies(new, 1) == {"for 2.0.0"}
    assert await bodies(old, 1) == {"for 1.0.0"}
    for version in ("1.0.0", "2.0.0"):
        await work.retire(pipeline, version)


async def test_a_release_queue_nobody_created_is_created_when_first_needed(
    work: WorkQueues, pipeline: str
) -> None:
    # Registered directly, never activated; a burst of sends meets it at once.
    opened = await asyncio.gather(*(work.for_release(pipeline, "3.1.4") for _ in range(8)))
    queue = opened[0]
    assert all(q is queue for q in opened)  # opened once
    await queue.send(Outgoing("late"))
    assert await bodies(queue, 1) == {"late"}
    await work.retire(pipeline, "3.1.4")
