"""The results channel, consumed by every coordinator replica: worker results, transition
heartbeats, worker presence reports and misroute reports.

A message is deleted once its effect is durable (or it is deterministically useless: late,
unsigned, unknown). A transient failure leaves it in the queue for redelivery; a malformed one is
released at once so the queue's redrive policy carries it to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from coordinator.dispatcher import Dispatcher
from coordinator.store import ExecutionStore
from coordinator.transitions import IN_FLIGHT, TransitionCommitter
from coordinator.workers import WorkerDirectory
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import StaleRecord
from tpf.loops import consume
from tpf.queues import Queue, Received
from tpf.settings import Timings
from tpf.signing import SignatureRejected, Signer
from tpf.wire import (
    Heartbeat,
    MalformedMessage,
    Misrouted,
    TransitionResult,
    WorkerPresence,
    decode,
)

log = logging.getLogger("tpf.coordinator")
REROUTES_REMEMBERED = 10_000


class ResultsConsumer:
    def __init__(
        self,
        *,
        queue: Queue,
        committer: TransitionCommitter,
        store: ExecutionStore,
        signer: Signer,
        timings: Timings,
        dispatcher: Dispatcher,
        workers: WorkerDirectory,
    ) -> None:
        self.queue, self.committer, self.store = queue, committer, store
        self.signer, self.timings = signer, timings
        self.dispatcher, self.workers = dispatcher, workers
        # Transitions this replica re-routed lately: a duplicated or replayed misroute report
        # must not multiply the command (a second genuine misroute waits for the deadline).
        self._rerouted: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        wait_s = int(self.timings.long_poll.total_seconds())
        await consume(
            self.queue, self.handle, stop, wait_s=wait_s, what="results", role="coordinator"
        )

    async def handle(self, message: Received) -> None:
        now = now_ms()
        try:
            envelope = decode(message.body)
            self.signer.verify(envelope, channel="results", now_ms=now)
        except MalformedMessage as exc:
            self._rejected(message, "malformed", str(exc))
            await self.queue.change_visibility(message.receipt, 0)
            return
        except SignatureRejected as exc:
            self._rejected(message, exc.reason, str(exc))
            await self.queue.delete(message.receipt)
            return
        try:
            if isinstance(envelope, Heartbeat):
                await self.heartbeat(envelope, now_ms=now)
            elif isinstance(envelope, TransitionResult):
                await self.committer.commit(envelope, now_ms=now)
            elif isinstance(envelope, WorkerPresence):
                await self.workers.report(envelope, now)
                metrics.WORKER_REPORTS.labels(state=envelope.state).inc()
            elif isinstance(envelope, Misrouted):
                await self.reroute(envelope, now_ms=now)
            else:
                self._rejected(message, "unexpected-kind", envelope.kind)
        except Exception:
            # Transient (throttling, a network blip): leave it for redelivery.
            log.exception(
                "result not committed; it will be redelivered",
                extra={"action": "commit-result", "messageId": message.message_id},
            )
            return
        await self.queue.delete(message.receipt)

    async def heartbeat(self, heartbeat: Heartbeat, *, now_ms: int) -> None:
        deadline = now_ms + int(self.timings.transition_timeout.total_seconds() * 1000)
        try:
            await self.store.renew(
                heartbeat.tenant_id,
                heartbeat.execution_id,
                transition_key=heartbeat.transition_key,
                deadline_ms=deadline,
            )
            metrics.HEARTBEATS.labels(role="coordinator", outcome="extended").inc()
        except StaleRecord as exc:
            current = exc.current
            live = (
                current is not None
                and current.status in IN_FLIGHT
                and current.transition_key == heartbeat.transition_key
            )
            # A live transition whose deadline is already later needs no extension.
            metrics.HEARTBEATS.labels(
                role="coordinator", outcome="not-needed" if live else "stale"
            ).inc()

    async def reroute(self, report: Misrouted, *, now_ms: int) -> None:
        """Send a refused command again, to its release's queue, if its transition is live."""
        record = await self.store.get(report.tenant_id, report.execution_id)
        live = (
            record is not None
            and record.status in IN_FLIGHT
            and record.transition_key == report.transition_key
            and record.version == report.execution_version
        )
        fields = {"executionId": report.execution_id, "transitionKey": report.transition_key}
        if record is None or not live:
            metrics.COMMANDS_REROUTED.labels(outcome="stale").inc()
            return
        key = (report.transition_key, report.execution_version)
        if key in self._rerouted:
            metrics.COMMANDS_REROUTED.labels(outcome="duplicate").inc()
            return
        await self.dispatcher.send(record, now_ms=now_ms)
        self._rerouted[key] = None
        if len(self._rerouted) > REROUTES_REMEMBERED:
            self._rerouted.popitem(last=False)
        metrics.COMMANDS_REROUTED.labels(outcome="sent").inc()
        log.warning(
            "command re-routed: worker %s of release %s refused a command of release %s",
            report.worker.worker_id,
            report.worker.release_version,
            record.release_version,
            extra={"action": "reroute", **fields},
        )

    def _rejected(self, message: Received, reason: str, detail: str) -> None:
        metrics.MESSAGES_REJECTED.labels(role="coordinator", queue="results", reason=reason).inc()
        log.warning(
            "message rejected",
            extra={
                "action": "reject-message",
                "reason": reason,
                "detail": detail,
                "messageId": message.message_id,
            },
        )
