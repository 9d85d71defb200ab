"""The transition worker: polls the work queue, runs transitions, answers on the results queue.

Delivery is at-least-once. For each command::

    receive ─ decode ─ verify ─ hosted? ─ run (extend visibility, heartbeat) ─ send result ─ delete

The result is sent *before* the command is deleted: a crash in between redelivers the command and
the transition runs again under the same transition key (steps are idempotent per key; the
coordinator fences a duplicate result). Messages that must never run are handled so that none is
lost and none loops hot:

* malformed: made visible again at once, so the queue's redrive policy moves it to the DLQ after
  ``maxReceiveCount`` receives, where an operator can read it;
* bad signature (unsigned, unknown key, tampered, expired): deleted, because no redelivery can
  make it valid; the coordinator's deadline sweeper retries the transition with a fresh command;
* another pipeline, contract or release: made visible again, since another worker may host it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from tpf import metrics
from tpf.contract import Contract
from tpf.loops import BoundedReceiver
from tpf.payloads import PayloadStore
from tpf.pipeline import Pipeline
from tpf.queues import Outgoing, Queue, Received
from tpf.settings import Settings
from tpf.signing import SignatureRejected, Signer
from tpf.wire import Heartbeat, MalformedMessage, TransitionCommand, WorkerIdentity, decode
from worker.runtime import InvocationRuntime
from worker.transition import run_transition

log = logging.getLogger("tpf.worker")

ROLE = "worker"
RESULT_TTL_MS = 3_600_000
"""A result may wait in a backlogged results queue; fencing, not the expiry, stops a stale one."""


def epoch_ms() -> int:
    return int(time.time() * 1000)


class TransitionWorker:
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
    ) -> None:
        self.pipelines = dict(pipelines)
        self.work, self.results, self.payloads = work, results, payloads
        self.signer, self.identity = signer, identity
        self.timings = settings.timings
        self.concurrency = concurrency or settings.worker_concurrency
        self.runtime = runtime or InvocationRuntime(role=ROLE)
        self._clock = clock
        # A command pinned to other code must not run here, even under the same pipeline id.
        self._contracts = {pid: Contract.from_pipeline(p).version for pid, p in pipelines.items()}
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
            envelope = decode(message.body)
            if not isinstance(envelope, TransitionCommand):
                raise MalformedMessage(f"a {envelope.kind} envelope on the work queue")
        except MalformedMessage as exc:
            await self._reject(message, "malformed", str(exc), visible_again=True)
            return
        try:
            self.signer.verify(envelope, channel="work", now_ms=self._clock())
        except SignatureRejected as exc:
            await self._reject(message, "signature", exc.reason, visible_again=False)
            return
        reason = self._not_hosted(envelope)
        if reason is not None:
            await self._reject(message, reason, reason.replace("_", " "), visible_again=True)
            return
        if envelope.deadline_epoch_ms <= self._clock():
            # It waited in the queue past its deadline: the coordinator's sweeper has taken the
            # transition over (or is about to) under a new key, so a run would only be wasted
            # work ending in a late result. Dropping it keeps a backlog from feeding itself.
            detail = envelope.transition_key
            await self._reject(message, "past_deadline", detail, visible_again=False)
            return
        try:
            await self._execute(message, envelope)
        except asyncio.CancelledError:
            await self._hand_back(message)  # drain ran out of grace: let another worker run it
            raise
        except Exception:
            # A framework bug, not a step failure (those become FAILED results). The command
            # stays invisible, reappears, and reaches the DLQ after maxReceiveCount receives.
            log.exception("transition crashed", extra={"action": "crash", **_fields(envelope)})

    def _not_hosted(self, command: TransitionCommand) -> str | None:
        contract = self._contracts.get(command.pipeline_id)
        if contract is None:
            return "unknown_pipeline"
        if contract != command.contract_version:
            return "other_contract"
        if command.release_version != self.identity.release_version:
            return "other_release"
        return None

    async def _execute(self, message: Received, command: TransitionCommand) -> None:
        fields = _fields(command)
        keepalive = asyncio.create_task(self._keep_invisible(message))
        heartbeat = asyncio.create_task(self._heartbeat(command))
        try:
            result = await run_transition(
                self.pipelines[command.pipeline_id],
                command,
                payloads=self.payloads,
                runtime=self.runtime,
                worker=self.identity,
            )
        finally:
            keepalive.cancel()
            heartbeat.cancel()
            await asyncio.gather(keepalive, heartbeat, return_exceptions=True)
        signed = self.signer.sign(
            result, channel="results", now_ms=self._clock(), ttl_ms=RESULT_TTL_MS
        )
        try:
            await self.results.send(Outgoing(signed.to_json()))
        except Exception as exc:
            # Keep the command: it reappears after its visibility timeout and runs again.
            log.error("result not sent: %s", exc, extra={"action": "result-unsent", **fields})
            return
        log.info("transition %s", result.outcome, extra={"action": "result-sent", **fields})
        await _quietly(self.work.delete(message.receipt), "delete", message)

    async def _keep_invisible(self, message: Received) -> None:
        seconds = self.timings.visibility_timeout.total_seconds()
        while True:
            await asyncio.sleep(seconds / 3)
            await _quietly(
                self.work.change_visibility(message.receipt, int(seconds)), "extend", message
            )

    async def _heartbeat(self, command: TransitionCommand) -> None:
        interval = self.timings.heartbeat_interval.total_seconds()
        # A heartbeat older than a transition timeout cannot keep anything alive: let it expire.
        ttl_ms = int(self.timings.transition_timeout.total_seconds() * 1000)
        # A command that waited long in the queue starts close to its deadline: beat at once,
        # so the transition gets a full timeout; otherwise short transitions never beat.
        pause = interval
        if command.deadline_epoch_ms - self._clock() < ttl_ms:
            pause = 0
        while True:
            await asyncio.sleep(pause)
            pause = interval
            beat = Heartbeat(
                tenant_id=command.tenant_id,
                execution_id=command.execution_id,
                transition_key=command.transition_key,
                execution_version=command.execution_version,
                worker=self.identity,
                sent_at_epoch_ms=self._clock(),
            )
            signed = self.signer.sign(beat, channel="results", now_ms=self._clock(), ttl_ms=ttl_ms)
            try:
                await self.results.send(Outgoing(signed.to_json()))
            except Exception as exc:
                metrics.HEARTBEATS.labels(ROLE, "failed").inc()
                log.warning(
                    "heartbeat failed: %s",
                    exc,
                    extra={"action": "heartbeat-failed", **_fields(command)},
                )
            else:
                metrics.HEARTBEATS.labels(ROLE, "sent").inc()

    async def _reject(
        self, message: Received, reason: str, detail: str, *, visible_again: bool
    ) -> None:
        metrics.MESSAGES_REJECTED.labels(ROLE, reason).inc()
        extra = {"action": "reject", "messageId": message.message_id, "reason": reason}
        log.warning("command rejected (%s): %s", reason, detail, extra=extra)
        if visible_again:
            await self._hand_back(message)
        else:
            await _quietly(self.work.delete(message.receipt), "delete", message)

    async def _hand_back(self, message: Received) -> None:
        await _quietly(self.work.change_visibility(message.receipt, 0), "hand-back", message)


def _fields(command: TransitionCommand) -> dict[str, Any]:
    return {"executionId": command.execution_id, "transitionKey": command.transition_key}


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
