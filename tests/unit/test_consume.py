"""A queue consumer runs each message as a task of its own: a slow one holds nothing behind it,
and stopping lets the started ones finish."""

from __future__ import annotations

import asyncio

import pytest

from tests.waiting import eventually
from tpf.loops import consume
from tpf.queues import InMemoryQueue, Outgoing, Received

pytestmark = pytest.mark.timeout(30)


async def test_a_slow_message_does_not_hold_the_ones_behind_it() -> None:
    queue = InMemoryQueue()
    await queue.send_many([Outgoing("slow")])
    release, handled = asyncio.Event(), []

    async def handle(message: Received) -> None:
        if message.body == "slow":
            await release.wait()  # opening an await of 100,000 items, say
        handled.append(message.body)
        await queue.delete(message.receipt)

    stop = asyncio.Event()
    task = asyncio.create_task(consume(queue, handle, stop, wait_s=1, what="t", role="test"))

    async def slow_started() -> bool:
        return not queue.messages or all(m.receives for m in queue.messages.values())

    await eventually(slow_started, timeout=5, interval=0.01)
    await queue.send_many([Outgoing(f"quick-{n}") for n in range(25)])

    async def quick_done() -> bool:
        return len(handled) == 25

    await eventually(quick_done, timeout=10, interval=0.01)
    assert "slow" not in handled
    stop.set()
    release.set()  # stopping waits for the started message to finish
    await asyncio.wait_for(task, timeout=10)
    assert handled[-1] == "slow" and not queue.messages
