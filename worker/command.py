"""One delivered command, from its signature to its result: what every transition worker shares.

The SQS poller (:mod:`worker.poller`) and the Lambda handler (:mod:`worker.lambda_handler`)
receive commands differently but handle each one the same way::

    decode ─ verify ─ hosted? ─ in time? ─ run (heartbeat) ─ send result

:meth:`CommandHandler.handle` never deletes or hands back a message itself: it returns a
:class:`Settlement` and the receiver acts on it (the poller through SQS, a Lambda function through
its partial batch response). Delivery is at-least-once, and a message that must never run is
settled so that none is lost and none loops hot:

===================================  ==========  ============================================
what happened                        settlement  why
===================================  ==========  ============================================
result sent                          delete      done; a redelivery would only run it again
bad signature (unsigned, unknown     delete      no redelivery can make it valid; the deadline
key, tampered, expired)                          sweeper retries with a fresh command
past its deadline                    delete      the sweeper has taken the transition over
superseded (a replay: its            delete      the record has moved on (``worker.fence``)
transition is no longer current)
another release                      delete      after a signed ``Misrouted`` reached the
                                                 coordinator, which sends it to its release's
                                                 queue (hand_back when that send fails)
malformed                            hand_back   the redrive policy moves it to the DLQ after
                                                 ``maxReceiveCount`` receives, for an operator
another pipeline or contract         hand_back   another worker of the release may host it
result not sent, or a crash          keep        reappears after its visibility timeout and
                                                 runs again under the same transition key
===================================  ==========  ============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tpf import metrics
from tpf.contract import Contract
from tpf.payloads import PayloadStore
from tpf.pipeline import Pipeline
from tpf.queues import Outgoing, Queue, Received
from tpf.runtime import InvocationRuntime
from tpf.settings import Timings
from tpf.signing import SignatureRejected, Signer
from tpf.wire import (
    Heartbeat,
    MalformedMessage,
    Misrouted,
    TransitionCommand,
    TransitionResult,
    WorkerIdentity,
    decode,
)
from worker.fence import TransitionFence
from worker.transition import run_transition

ROLE = "worker"
RESULT_TTL_MS = 3_600_000
"""A result may wait in a backlogged results queue; fencing, not the expiry, stops a stale one."""

Disposal = Literal["delete", "hand_back", "keep"]


def epoch_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Settlement:
    """What should become of a delivered command (see the module docstring), and why."""

    disposal: Disposal
    rejected: str | None = None
    """The reason it was refused unrun: a ``tpf_messages_rejected`` label."""
    outcome: str | None = None
    """The outcome of the transition it ran, once its result was sent."""


class CommandHandler:
    def __init__(
        self,
        *,
        pipelines: Mapping[str, Pipeline],
        results: Queue,
        payloads: PayloadStore,
        signer: Signer,
        timings: Timings,
        identity: WorkerIdentity,
        runtime: InvocationRuntime | None = None,
        clock: Callable[[], int] = epoch_ms,
        log: logging.Logger | None = None,
        fence: TransitionFence | None = None,
    ) -> None:
        self.pipelines = dict(pipelines)
        self.fence = fence
        self.results, self.payloads = results, payloads
        self.signer, self.identity, self.timings = signer, identity, timings
        self.runtime = runtime or InvocationRuntime(role=ROLE)
        self._clock = clock
        self.log = log or logging.getLogger("tpf.worker")
        # A command pinned to other code must not run here, even under the same pipeline id.
        self._contracts = {pid: Contract.from_pipeline(p).version for pid, p in pipelines.items()}

    async def handle(self, message: Received) -> Settlement:
        """Run one command if it is valid, hosted and in time; never raises but on cancellation."""
        try:
            envelope = decode(message.body)
            if not isinstance(envelope, TransitionCommand):
                raise MalformedMessage(f"a {envelope.kind} envelope on the work queue")
        except MalformedMessage as exc:
            return self._reject(message.message_id, "malformed", str(exc), "hand_back")
        try:
            self.signer.verify(envelope, channel="work", now_ms=self._clock())
        except SignatureRejected as exc:
            return self._reject(message.message_id, "signature", exc.reason, "delete", envelope)
        refusal = await self.refusal(envelope)
        if refusal is not None:
            reason, disposal = refusal
            if reason == "other_release":
                disposal = await self._report_misrouted(envelope)
            return self._reject(message.message_id, reason, reason, disposal, envelope)
        try:
            result = await self.execute(envelope, keep_alive=self.keep_alive(message))
        except Exception:
            # A framework bug, not a step failure (those become FAILED results). The command
            # stays invisible, reappears, and reaches the DLQ after maxReceiveCount receives.
            extra = {"action": "crash", **command_fields(envelope)}
            self.log.exception("transition crashed", extra=extra)
            return Settlement("keep")
        return await self._send_result(envelope, result)

    async def refusal(self, command: TransitionCommand) -> tuple[str, Disposal] | None:
        """Why a verified command must not run here (a rejection reason and what to do with
        the message), or None when it may run."""
        reason = self._not_hosted(command)
        if reason is not None:
            return reason, "hand_back"
        if command.deadline_epoch_ms <= self._clock():
            # It waited in the queue past its deadline: the coordinator's sweeper has taken the
            # transition over (or is about to) under a new key, so a run would only be wasted
            # work ending in a late result. Dropping it keeps a backlog from feeding itself.
            return "past_deadline", "delete"
        if self.fence is not None and not await self.fence.is_live(command):
            return "superseded", "delete"
        return None

    async def execute(
        self, command: TransitionCommand, *, keep_alive: Awaitable[None] | None = None
    ) -> TransitionResult:
        """Run a hosted, verified command to its next durable boundary, heartbeating while it
        runs (``keep_alive`` runs beside it); the result is not signed yet."""
        keepalive = asyncio.ensure_future(keep_alive or asyncio.Event().wait())
        heartbeat = asyncio.create_task(self._heartbeat(command))
        try:
            return await run_transition(
                self.pipelines[command.pipeline_id],
                command,
                payloads=self.payloads,
                runtime=self.runtime,
                worker=self.identity,
            )
        except asyncio.CancelledError:
            # Given up mid-run (a drain out of grace): the command goes back to the queue. One
            # last beat makes the deadline count from now, not from the last periodic beat, so
            # the next worker has a whole transition timeout to take it over as the same attempt.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._beat(command), timeout=2)
            raise
        finally:
            keepalive.cancel()
            heartbeat.cancel()
            await asyncio.gather(keepalive, heartbeat, return_exceptions=True)

    async def keep_alive(self, message: Received) -> None:
        """Runs beside a transition; a receiver that must extend the message's visibility
        overrides it. A Lambda function needs nothing: its timeout fits the visibility timeout."""

    def _not_hosted(self, command: TransitionCommand) -> str | None:
        contract = self._contracts.get(command.pipeline_id)
        if contract is None:
            return "unknown_pipeline"
        if contract != command.contract_version:
            return "other_contract"
        if command.release_version != self.identity.release_version:
            return "other_release"
        return None

    async def _send_result(
        self, command: TransitionCommand, result: TransitionResult
    ) -> Settlement:
        fields = command_fields(command)
        signed = self.signer.sign(
            result, channel="results", now_ms=self._clock(), ttl_ms=RESULT_TTL_MS
        )
        try:
            await self.results.send(Outgoing(signed.to_json()))
        except Exception as exc:
            # Keep the command: it reappears after its visibility timeout and runs again.
            self.log.error("result not sent: %s", exc, extra={"action": "result-unsent", **fields})
            return Settlement("keep")
        self.log.info("transition %s", result.outcome, extra={"action": "result-sent", **fields})
        return Settlement("delete", outcome=result.outcome)

    async def _report_misrouted(self, command: TransitionCommand) -> Disposal:
        """Tell the coordinator, which re-routes the command to its release's own queue."""
        report = Misrouted(
            tenant_id=command.tenant_id,
            execution_id=command.execution_id,
            transition_key=command.transition_key,
            execution_version=command.execution_version,
            release_version=command.release_version,
            worker=self.identity,
        )
        signed = self.signer.sign(
            report, channel="results", now_ms=self._clock(), ttl_ms=RESULT_TTL_MS
        )
        try:
            await self.results.send(Outgoing(signed.to_json()))
        except Exception as exc:
            self.log.warning(
                "misroute not reported: %s",
                exc,
                extra={"action": "misroute-unsent", **command_fields(command)},
            )
            return "hand_back"
        return "delete"

    async def _heartbeat(self, command: TransitionCommand) -> None:
        interval = self.timings.heartbeat_interval.total_seconds()
        ttl_ms = int(self.timings.transition_timeout.total_seconds() * 1000)
        # A command that waited long in the queue starts close to its deadline: beat at once,
        # so the transition gets a full timeout; otherwise short transitions never beat.
        pause = interval
        if command.deadline_epoch_ms - self._clock() < ttl_ms:
            pause = 0
        while True:
            await asyncio.sleep(pause)
            pause = interval
            await self._beat(command)

    async def _beat(self, command: TransitionCommand) -> None:
        # A heartbeat older than a transition timeout cannot keep anything alive: let it expire.
        ttl_ms = int(self.timings.transition_timeout.total_seconds() * 1000)
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
            self.log.warning(
                "heartbeat failed: %s",
                exc,
                extra={"action": "heartbeat-failed", **command_fields(command)},
            )
        else:
            metrics.HEARTBEATS.labels(ROLE, "sent").inc()

    def _reject(
        self,
        message_id: str,
        reason: str,
        detail: str,
        disposal: Disposal,
        command: TransitionCommand | None = None,
    ) -> Settlement:
        metrics.MESSAGES_REJECTED.labels(ROLE, "work", reason).inc()
        extra = {"action": "reject", "messageId": message_id, "reason": reason}
        if command is not None:
            extra.update(command_fields(command))
        self.log.warning("command rejected (%s): %s", reason, detail, extra=extra)
        return Settlement(disposal, rejected=reason)


def command_fields(command: TransitionCommand) -> dict[str, Any]:
    """Log fields that let a search follow one execution across roles."""
    return {"executionId": command.execution_id, "transitionKey": command.transition_key}
