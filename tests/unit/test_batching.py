"""The batcher behind SQS sends and deletes: a full batch leaves at once; a posted item (a
delete) does not hold its caller, and a failure is reported, not raised at no one."""

from __future__ import annotations

import asyncio

from tpf.queues.batching import Batcher


class Flushes:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, items: list[str]) -> list[Exception | None]:
        self.batches.append(list(items))
        return [None] * len(items)


async def test_a_full_batch_leaves_at_once() -> None:
    flushes = Flushes()
    batcher: Batcher[str] = Batcher(flushes, linger_s=30, size=3)
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(x) for x in "xyz")), timeout=5)
    assert flushes.batches == [["x", "y", "z"]]


async def test_a_posted_item_does_not_hold_its_caller_and_a_failure_is_reported() -> None:
    flushes = Flushes()
    failed: list[tuple[str, str]] = []

    async def flaky(items: list[str]) -> list[Exception | None]:
        await flushes(items)
        return [RuntimeError("gone") if item == "bad" else None for item in items]

    batcher: Batcher[str] = Batcher(flaky, linger_s=30)  # only a flush sends them
    for item in ("ok", "bad"):
        batcher.post(item, lambda item, exc: failed.append((item, str(exc))))
    assert flushes.batches == []  # posted, not sent: nobody waited
    await asyncio.wait_for(batcher.flush(), timeout=5)
    assert flushes.batches == [["ok", "bad"]]
    assert failed == [("bad", "gone")]
