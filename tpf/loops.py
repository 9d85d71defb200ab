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

from tpf.queues import Queue, Received

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
