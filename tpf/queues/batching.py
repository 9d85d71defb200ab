"""Coalescing one-at-a-time calls into batch requests.

Callers send and delete one message at a time; ``Batcher`` gathers concurrent calls into
requests of 10 (SQS's batch limit) and returns to each caller once its own entry is durable, so
throughput comes from batching without weakening "sent means sent". A delete is posted: its
caller goes on, and it waits longer for company, since no one waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tpf.queues.port import BATCH

T = TypeVar("T")


@dataclass
class _Pending(Generic[T]):
    item: T
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher(Generic[T]):
    """Gathers items from concurrent callers for up to ``linger_s``; flushes ``size`` at a time.
    A caller waits for its item's batch (``submit``) or not (``post``)."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[Exception | None]]],
        linger_s: float = 0.002,
        size: int = BATCH,
    ) -> None:
        self._flush = flush
        self._linger_s = linger_s
        self._size = size
        self._pending: list[_Pending[T]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._posted: set[asyncio.Future[None]] = set()

    async def submit(self, item: T) -> None:
        await self._enqueue(item).done

    def post(self, item: T, on_failure: Callable[[T, BaseException], None]) -> None:
        """``item`` goes with the next batch; the caller does not wait for it. A failure is
        handed to ``on_failure``."""
        entry = self._enqueue(item)
        self._posted.add(entry.done)

        def settled(done: asyncio.Future[None]) -> None:
            self._posted.discard(done)
            if not done.cancelled() and done.exception() is not None:
                on_failure(item, done.exception())  # type: ignore[arg-type]

        entry.done.add_done_callback(settled)

    async def flush(self) -> None:
        """Send what is pending now, and wait for what was posted."""
        self._drain()
        if self._posted:
            await asyncio.gather(*list(self._posted), return_exceptions=True)

    def _enqueue(self, item: T) -> _Pending[T]:
        entry = _Pending(item)
        self._pending.append(entry)
        if len(self._pending) >= self._size:
            self._drain()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._drain)
        return entry

    def _drain(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self._size], self._pending[self._size :]
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[_Pending[T]]) -> None:
        try:
            outcomes = await self._flush([p.item for p in batch])
        except Exception as exc:  # the whole request failed: every caller learns it
            outcomes = [exc] * len(batch)
        for entry, outcome in zip(batch, outcomes, strict=True):
            if entry.done.done():
                continue
            if outcome is None:
                entry.done.set_result(None)
            else:
                entry.done.set_exception(outcome)
