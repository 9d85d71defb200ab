"""The queue contract, one suite on the in-memory fake, moto's server and LocalStack: the fake
is only worth its speed while it behaves as SQS does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.substrates import TestStack
from tests.waiting import eventually
from tpf.queues import InMemoryQueue, Outgoing, Queue, QueueError, Received, SqsQueue
from tpf.substrate import open_clients

VISIBILITY_S = 30


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[Queue]:
    """A fresh, empty queue per test, hiding a received message for 30 s."""
    if request.param == "memory":
        yield InMemoryQueue("contract", visibility_s=VISIBILITY_S)
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        name = stack.settings.resource(f"contract-{uuid.uuid4().hex[:8]}")
        created = await aws.sqs.create_queue(
            QueueName=name, Attributes={"VisibilityTimeout": str(VISIBILITY_S)}
        )
        queue = await SqsQueue.open(aws.sqs, name)
        try:
            yield queue
        finally:
            await queue.flush()  # the test's deletes, before their queue goes
            await aws.sqs.delete_queue(QueueUrl=created["QueueUrl"])


async def receive_all(queue: Queue, count: int, *, timeout: float = 15) -> list[Received]:
    """Receive until ``count`` distinct messages arrived (SQS spreads them over polls)."""
    found: dict[str, Received] = {}

    async def enough() -> bool:
        for message in await queue.receive(max_messages=10, wait_s=1):
            found[message.message_id] = message
        return len(found) >= count

    await eventually(enough, timeout=timeout, interval=0)
    return list(found.values())


async def test_a_sent_message_arrives_once_and_a_deleted_one_never_again(queue: Queue) -> None:
    await queue.send(Outgoing('{"n": 1}'))
    [message] = await receive_all(queue, 1)
    assert (message.body, message.receive_count) == ('{"n": 1}', 1)
    await queue.delete(message.receipt)
    assert await queue.receive(max_messages=10, wait_s=1) == []
    assert await queue.backlog() == 0


async def test_a_message_made_visible_again_is_redelivered_with_its_count(queue: Queue) -> None:
    await queue.send(Outgoing("again"))
    [first] = await receive_all(queue, 1)
    assert await queue.receive(max_messages=10, wait_s=0) == []  # hidden while in flight
    await queue.change_visibility(first.receipt, 0)
    [second] = await receive_all(queue, 1)
    assert (second.message_id, second.body, second.receive_count) == (first.message_id, "again", 2)
    await queue.delete(second.receipt)


async def test_more_messages_than_one_batch_all_arrive(queue: Queue) -> None:
    bodies = {f"m-{i}" for i in range(25)}
    await queue.send_many([Outgoing(b) for b in sorted(bodies)])
    received = await receive_all(queue, 25, timeout=30)
    assert {m.body for m in received} == bodies
    for message in received:
        await queue.delete(message.receipt)


async def test_the_backlog_counts_what_waits_to_be_received(queue: Queue) -> None:
    await queue.send_many([Outgoing(str(i)) for i in range(3)])

    async def three_waiting() -> bool:
        return await queue.backlog() == 3

    await eventually(three_waiting, timeout=15)
    received = await receive_all(queue, 3)

    async def none_waiting() -> bool:
        return await queue.backlog() == 0

    await eventually(none_waiting, timeout=15)
    for message in received:
        await queue.delete(message.receipt)


async def test_a_delayed_message_arrives_only_after_its_delay(queue: Queue) -> None:
    await queue.send(Outgoing("later", delay_s=5))
    assert await queue.receive(max_messages=10, wait_s=0) == []
    [message] = await receive_all(queue, 1, timeout=20)
    assert message.body == "later"


async def test_messages_too_big_to_batch_together_are_split_by_bytes(queue: Queue) -> None:
    limit = queue.max_bytes
    bodies = [f"{i}:" + "x" * (limit // 3) for i in range(6)]  # 6 fit 10 by count, not by bytes
    await queue.send_many([Outgoing(b) for b in bodies])
    received = await receive_all(queue, 6, timeout=30)
    assert sorted(m.body for m in received) == sorted(bodies)
    for message in received:
        await queue.delete(message.receipt)


async def test_a_message_over_the_maximum_is_refused_alone(queue: Queue) -> None:
    limit = queue.max_bytes
    fits, too_big = Outgoing("fits"), Outgoing("x" * (limit + 1))
    sent = await asyncio.gather(queue.send(fits), queue.send(too_big), return_exceptions=True)
    assert sent[0] is None and isinstance(sent[1], QueueError), sent
    [message] = await receive_all(queue, 1)
    assert message.body == "fits"
    await queue.delete(message.receipt)
