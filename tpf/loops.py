"""The two loops every long-running part of a role runs, written once.

``consume`` long-polls a queue and handles each batch concurrently; ``repeat`` runs a sweep at
an interval. Both end promptly when ``stop`` is set, and survive any one failed round: a failed
receive or sweep is logged and retried, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tpf.queues import BATCH, Queue, Received

log = logging.getLogger("tpf")


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` unless asked to stop first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def consume(
    queue: Queue,
    handle: Callable[[Received], Awaitable[None]],
    stop: asyncio.Event,
    *,
    wait_s: int,
    what: str,
) -> None:
    while not stop.is_set():
        try:
            messages = await queue.receive(wait_s=max(1, wait_s))
        except Exception:
            log.exception("receiving %s failed", what, extra={"action": f"receive-{what}"})
            await pause(stop, 1.0)
            continue
        await asyncio.gather(*(handle(m) for m in messages))


async def repeat(
    work: Callable[[], Awaitable[object]], stop: asyncio.Event, *, interval_s: float, what: str
) -> None:
    while not stop.is_set():
        try:
            await work()
        except Exception:
            log.exception("%s failed", what, extra={"action": what})
        await pause(stop, interval_s)


RECEIVE_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


class BoundedReceiver:
    """Receives for a consumer that runs each message as its own task, up to ``capacity`` at once.

    It never takes a message it cannot start at once (that message would only sit out its
    visibility timeout), stops waiting the moment ``stopped`` completes (anything SQS handed out
    meanwhile reappears later), and backs off after a failed receive.
    """

    def __init__(self, queue: Queue, *, capacity: int, wait_s: int) -> None:
        self.queue, self.capacity, self.wait_s = queue, capacity, wait_s
        self._failures = 0

    async def next(
        self, running: set[asyncio.Task[None]], stopped: asyncio.Task[object]
    ) -> list[Received] | None:
        """The next batch (maybe empty); ``None`` once ``stopped`` completes."""
        free = self.capacity - len(running)
        if free <= 0:
            await asyncio.wait({*running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            return None if stopped.done() else []
        receive = asyncio.create_task(
            self.queue.receive(max_messages=min(BATCH, free), wait_s=self.wait_s)
        )
        await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not receive.done():
            receive.cancel()
            await asyncio.gather(receive, return_exceptions=True)
            return None
        try:
            batch = receive.result()
        except Exception as exc:
            delay = RECEIVE_BACKOFF_S[min(self._failures, len(RECEIVE_BACKOFF_S) - 1)]
            self._failures += 1
            log.warning(
                "receive failed; backing off %.1fs: %s",
                delay,
                exc,
                extra={"action": "receive-failed", "queue": self.queue.name},
            )
            await asyncio.wait({stopped}, timeout=delay)
            return None if stopped.done() else []
        self._failures = 0
        return batch
