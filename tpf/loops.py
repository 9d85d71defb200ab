"""The loops every long-running part of a role runs, and the supervisor over them, written once.

``consume`` long-polls a queue and handles each batch concurrently; ``repeat`` runs a sweep at
an interval. Both end promptly when ``stop`` is set, and survive any one failed round: a failed
receive or sweep is logged and retried, never fatal. ``isolated`` is the one place a message
that raises is caught: logged once with its id, counted, and left for the queue's redrive policy.

``supervised`` runs a whole loop and restarts it, with capped backoff, if it ever raises anyway;
``LoopHealth`` turns those restarts into readiness: DOWN after ``limit`` failures within
``window_s``, so a replica whose loop keeps dying leaves the load balancer instead of the host.
Only a ``ConfigurationError`` ends the replica: no restart can fix a setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from tpf import metrics
from tpf.errors import ConfigurationError
from tpf.queues import BATCH, Queue, Received

log = logging.getLogger("tpf")


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` unless asked to stop first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


CONSUMER_CAPACITY = 32
"""Messages one consumer handles at once. Each is a task of its own, so a slow one (an await of
100,000 items being opened) never holds the messages behind it, whose signatures would expire."""


async def consume(
    queue: Queue,
    handle: Callable[[Received], Awaitable[None]],
    stop: asyncio.Event,
    *,
    wait_s: int,
    what: str,
    role: str,
    capacity: int = CONSUMER_CAPACITY,
) -> None:
    """Receive and handle messages until ``stop``; then let those started finish."""
    receiver = BoundedReceiver(queue, capacity=capacity, wait_s=max(1, wait_s))
    running: set[asyncio.Task[None]] = set()
    stopped = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set() and (batch := await receiver.next(running, stopped)) is not None:
            for message in batch:
                task = asyncio.create_task(isolated(handle, message, queue=what, role=role))
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        stopped.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def isolated(
    handle: Callable[[Received], Awaitable[None]], message: Received, *, queue: str, role: str
) -> None:
    """Run ``handle`` on one message; whatever it raises stays with that message.

    The message is not deleted: SQS makes it visible again, and after ``maxReceiveCount``
    deliveries the queue's redrive policy moves it to the dead-letter queue.
    """
    try:
        await handle(message)
    except Exception as exc:
        message_failed(exc, message, queue=queue, role=role)


def message_failed(exc: Exception, message: Received, *, queue: str, role: str) -> None:
    """Log (once, with the message id) and count a message whose handling raised."""
    metrics.MESSAGES_REJECTED.labels(role=role, queue=queue, reason="unexpected").inc()
    log.error(
        "a %s message failed; left for redelivery and, in the end, the DLQ: %s",
        queue,
        type(exc).__name__,
        exc_info=exc,
        extra={"action": "message-failed", "messageId": message.message_id},
    )


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


RESTART_BACKOFF_S = (0.5, 30.0)
"""First and longest pause before a failed loop is started again."""


class LoopHealth:
    """Failures of a replica's supervised loops: ready while under ``limit`` in ``window_s``."""

    def __init__(self, *, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.restarts = 0
        self._failures: deque[float] = deque()

    def failed(self) -> None:
        self.restarts += 1
        self._failures.append(time.monotonic())

    @property
    def ready(self) -> bool:
        horizon = time.monotonic() - self.window_s
        while self._failures and self._failures[0] < horizon:
            self._failures.popleft()
        return len(self._failures) < self.limit


async def supervised(
    name: str,
    run: Callable[[asyncio.Event], Awaitable[object]],
    stop: asyncio.Event,
    *,
    health: LoopHealth,
    role: str,
    backoff: tuple[float, float] = RESTART_BACKOFF_S,
) -> None:
    """Run ``run(stop)`` until it returns; restart it with capped backoff whenever it raises."""
    delay, longest = backoff
    while not stop.is_set():
        try:
            await run(stop)
            return
        except ConfigurationError:
            raise
        except Exception:
            health.failed()
            metrics.LOOP_RESTARTS.labels(role=role, loop=name).inc()
            log.exception(
                "loop %s failed; restarting it in %.1f s",
                name,
                delay,
                extra={"action": "loop-restart", "loop": name},
            )
            await pause(stop, delay)
            delay = min(delay * 2, longest)
