"""The transition worker: polls the work queue, runs transitions, answers on the results queue.

Delivery is at-least-once. For each command::

    receive ─ handle (worker.command) ─ settle: delete, hand back or keep

The result is sent *before* the command is deleted: a crash in between redelivers the command and
the transition runs again under the same transition key (steps are idempotent per key; the
coordinator fences a duplicate result). Which messages are deleted, handed back (made visible
again at once) or kept invisible is decided in :mod:`worker.command`, shared with the Lambda
handler; this module owns the receive loop, the visibility extension and the drain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from tpf import metrics
from tpf.loops import BoundedReceiver, message_failed
from tpf.payloads import PayloadStore
from tpf.pipeline import Pipeline
from tpf.queues import Queue, Received
from tpf.runtime import InvocationRuntime
from tpf.settings import Settings
from tpf.signing import Signer
from tpf.wire import WorkerIdentity
from worker.command import ROLE, CommandHandler, Settlement, epoch_ms
from worker.fence import TransitionFence

log = logging.getLogger("tpf.worker")


class TransitionWorker(CommandHandler):
    """A CommandHandler fed by its own receive loop, ``concurrency`` commands at a time."""

    def __init__(
        self,
        *,
        pipelines: Mapping[str, Pipeline],
        work: Queue,
        results: Queue,
        payloads: PayloadStore,
        signer: Signer,
        settings: Settings,
        identity: WorkerIdentity,
        concurrency: int | None = None,
        runtime: InvocationRuntime | None = None,
        clock: Callable[[], int] = epoch_ms,
        fence: TransitionFence | None = None,
    ) -> None:
        super().__init__(
            pipelines=pipelines,
            results=results,
            payloads=payloads,
            signer=signer,
            timings=settings.timings,
            identity=identity,
            runtime=runtime,
            clock=clock,
            fence=fence,
        )
        self.work = work
        self.concurrency = concurrency or settings.worker_concurrency
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self.state: Literal["idle", "running", "draining", "stopped"] = "idle"
        """For the worker registry: ``draining`` once stop() was asked and receiving ended."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until :meth:`stop`; never raises on a transient receive error."""
        self._running, self.state = True, "running"
        self._finished.clear()
        stop_signal = asyncio.create_task(self._stopping.wait())
        receiver = BoundedReceiver(
            self.work,
            capacity=self.concurrency,
            wait_s=int(self.timings.long_poll.total_seconds()),
        )
        try:
            while not self._stopping.is_set():
                batch = await receiver.next(set(self._inflight), stop_signal)
                if batch is None:
                    break
                for message in batch:
                    if self._stopping.is_set():  # stop() won the race with this receive
                        await self._hand_back(message)
                    else:
                        self._start(message)
        finally:
            stop_signal.cancel()
            self.state = "draining"
            await self._drain()
            self._running, self.state = False, "stopped"
            self._finished.set()

    async def stop(self) -> None:
        """Drain: take no new message, let in-flight work finish within the grace period."""
        self._stopping.set()
        if self._running:
            await self._finished.wait()

    def _start(self, message: Received) -> None:
        task = asyncio.create_task(self._handle(message))
        self._inflight.add(task)
        metrics.IN_FLIGHT.labels(ROLE).inc()
        task.add_done_callback(self._finished_task)

    def _finished_task(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        metrics.IN_FLIGHT.labels(ROLE).dec()

    async def _drain(self) -> None:
        if not self._inflight:
            return
        grace = self.timings.shutdown_grace.total_seconds()
        log.info("draining %d transitions", len(self._inflight), extra={"action": "drain"})
        _, unfinished = await asyncio.wait(set(self._inflight), timeout=grace)
        for task in unfinished:
            task.cancel()  # _handle hands its message back before it ends
        if unfinished:
            await asyncio.wait(unfinished)

    # -- one message -------------------------------------------------------------------------

    async def _handle(self, message: Received) -> None:
        try:
            settlement = await self.handle(message)
        except asyncio.CancelledError:
            await self._hand_back(message)  # drain ran out of grace: let another worker run it
            raise
        except Exception as exc:  # left in flight: redelivered after its visibility timeout
            message_failed(exc, message, queue="work", role=ROLE)
            return
        await self._settle(message, settlement)

    async def _settle(self, message: Received, settlement: Settlement) -> None:
        if settlement.disposal == "delete":
            await _quietly(self.work.delete(message.receipt), "delete", message)
        elif settlement.disposal == "hand_back":
            await self._hand_back(message)

    async def keep_alive(self, message: Received) -> None:
        """Extend the command's visibility while it runs, so no other worker receives it."""
        seconds = self.timings.visibility_timeout.total_seconds()
        while True:
            await asyncio.sleep(seconds / 3)
            await _quietly(
                self.work.change_visibility(message.receipt, int(seconds)), "extend", message
            )

    async def _hand_back(self, message: Received) -> None:
        await _quietly(self.work.change_visibility(message.receipt, 0), "hand-back", message)


async def _quietly(call: Awaitable[None], what: str, message: Received) -> None:
    """Queue housekeeping: a failure is logged, never fatal (SQS redelivers regardless)."""
    try:
        await call
    except Exception as exc:
        log.warning(
            "%s of message failed: %s",
            what,
            exc,
            extra={"action": f"{what}-failed", "messageId": message.message_id},
        )
