"""Items of an expansion as they flow through one transition: streams, not lists.

An expand step may return a list or a stream (``Iterable``, ``AsyncIterable``…); the per-item
steps after it run on a window of items at a time; a collect step takes a list or an
``AsyncIterable``. What the transition hands on is written page by page (``tpf.pages``). So a
worker holds a window of items and one page, however long the expansion is, unless a step asks
for a list.

Each item travels with its index in the expansion, which names it in idempotency keys and in
failure messages. A failure while items are drawn, lazily, surfaces where the stream is read;
:class:`StepError` carries the step it belongs to, so it is reported as that step's.
"""

from __future__ import annotations

import asyncio
import collections.abc
import typing
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from tpf.pipeline import ITEM_STREAMS, StepSpec

Item = tuple[int, Any]
"""(index in the expansion, value)."""

WINDOW = 256
"""Items a per-item step has started at once at most (its results wait in order)."""


class StepError(Exception):
    """A step's failure met while its items were drawn: which step, which item, what."""

    def __init__(self, step_index: int, error: Exception, item_index: int | None = None) -> None:
        super().__init__(str(error))
        self.step_index, self.error, self.item_index = step_index, error, item_index


def takes_stream(spec: StepSpec) -> bool:
    """Whether a collect step takes its items as an async stream rather than a list."""
    return typing.get_origin(spec.input_type) in (
        collections.abc.AsyncIterable,
        collections.abc.AsyncIterator,
    )


def returns_stream(value: Any) -> bool:
    return not isinstance(value, list) and isinstance(value, (Iterable, AsyncIterable))


async def expanded(spec: StepSpec, produced: Any) -> AsyncIterator[Item]:
    """What an expand step returned, numbered; its own failures are the step's."""
    index = 0
    try:
        if isinstance(produced, AsyncIterable):
            async for value in produced:
                yield index, value
                index += 1
        else:
            for value in produced:
                yield index, value
                index += 1
                if index % WINDOW == 0:
                    await asyncio.sleep(0)  # a long sync generator must not starve the loop
    except StepError:
        raise
    except Exception as exc:
        raise StepError(spec.index, exc) from exc


async def mapped(
    spec: StepSpec,
    items: AsyncIterator[Item],
    run: Callable[[int, Any], Awaitable[Any]],
    concurrency: int,
) -> AsyncIterator[Item]:
    """``run`` on every item, ``concurrency`` at once, results in item order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, value: Any) -> Any:
        async with limit:
            try:
                return await run(index, value)
            except Exception as exc:
                raise StepError(spec.index, exc, index) from exc

    window: list[tuple[int, asyncio.Task[Any]]] = []
    try:
        async for index, value in items:
            window.append((index, asyncio.ensure_future(one(index, value))))
            if len(window) >= WINDOW:
                first, task = window.pop(0)
                yield first, await task
        while window:
            first, task = window.pop(0)
            yield first, await task
    finally:
        for _, task in window:  # a failure or an abandoned stream: stop the rest
            task.cancel()
        if window:
            await asyncio.gather(*(t for _, t in window), return_exceptions=True)


async def values(items: AsyncIterator[Item]) -> AsyncIterator[Any]:
    """The values alone, for a collect step that takes a stream."""
    async for _, value in items:
        yield value


def is_item_stream_type(tp: Any) -> bool:
    return typing.get_origin(tp) in ITEM_STREAMS
