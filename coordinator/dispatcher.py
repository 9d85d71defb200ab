"""Dispatch: move a record to RUNNING with a fresh transition key, then send its signed command.

The write comes first: if the coordinator dies before the send, the record's deadline passes and
the sweeper counts a timed-out attempt, so nothing waits forever. A command never leaves without
the record saying which transition it belongs to, so its result can always be fenced.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from coordinator.routing import RestDispatch, WorkQueues
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.contract import Contract
from tpf.payloads import PayloadStore
from tpf.queues import Outgoing
from tpf.records import ExecutionRecord
from tpf.registry import Registry
from tpf.settings import Timings
from tpf.signing import Signer
from tpf.wire import Payload, PayloadRefWire, TransitionCommand

INLINE_MESSAGE_LIMIT = 32 * 1024
"""Payload bytes carried inside a command; keeps the message within one 64 KiB SQS chunk."""
SIGNATURE_SLACK = timedelta(minutes=5)


class Dispatcher:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        registry: Registry,
        work: WorkQueues,
        signer: Signer,
        timings: Timings,
        payloads: PayloadStore | None = None,
    ) -> None:
        self.store, self.registry, self.work = store, registry, work
        self.signer, self.timings, self.payloads = signer, timings, payloads
        self.rest: RestDispatch | None = None
        """Set once results can be committed (wiring): routes to REST workers when a release
        has healthy ones."""

    def deadline(self, now_ms: int, delay: timedelta = timedelta(0)) -> int:
        """Time in the queue plus the transition's own budget; heartbeats extend it."""
        budget = delay + self.timings.queue_allowance + self.timings.transition_timeout
        return now_ms + int(budget.total_seconds() * 1000)

    async def dispatch(
        self,
        record: ExecutionRecord,
        *,
        now_ms: int,
        only_if_due: bool = False,
        payload: bytes | None = None,
    ) -> ExecutionRecord:
        running = await self.store.dispatch(
            record, now_ms=now_ms, deadline_ms=self.deadline(now_ms), only_if_due=only_if_due
        )
        await self.send(running, now_ms=now_ms, payload=payload)
        return running

    async def send(
        self,
        record: ExecutionRecord,
        *,
        now_ms: int,
        payload: bytes | None = None,
        delay: timedelta = timedelta(0),
    ) -> None:
        """Send the command of the transition ``record`` names (RUNNING or a scheduled retry)."""
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        ref = record.step_payload
        if payload is None and ref.tier == "answers" and self.payloads is not None:
            # Recorded answers are read where they are: a worker never resolves them itself.
            payload = await self.payloads.get(record.tenant_id, record.execution_id, ref)
        command = self.command_for(record, contract, payload)
        ttl_ms = (record.due_at_ms or now_ms) - now_ms + int(SIGNATURE_SLACK.total_seconds() * 1000)
        signed = self.signer.sign(command, channel="work", now_ms=now_ms, ttl_ms=ttl_ms)
        delay_s = min(round(delay.total_seconds()), 900)
        if self.rest is not None:
            endpoint = await self.rest.endpoint(record.pipeline_id, record.release_version, now_ms)
            if endpoint is not None:
                self.rest.start(endpoint, signed, delay_s=delay_s)
                metrics.TRANSITIONS_DISPATCHED.labels(channel="rest").inc()
                return
        queue = await self.work.for_release(record.pipeline_id, record.release_version)
        await queue.send(Outgoing(signed.to_json(), delay_s=delay_s))
        metrics.TRANSITIONS_DISPATCHED.labels(channel="queue").inc()

    @staticmethod
    def command_for(
        record: ExecutionRecord, contract: Contract, payload: bytes | None = None
    ) -> TransitionCommand:
        assert record.transition_key is not None, "only a dispatched record has a command"
        return TransitionCommand(
            tenant_id=record.tenant_id,
            execution_id=record.execution_id,
            pipeline_id=record.pipeline_id,
            contract_version=record.contract_version,
            release_version=record.release_version,
            current_step_index=record.step_index,
            stop_before_step_index=contract.next_boundary(record.step_index),
            attempt=record.attempt,
            execution_version=record.version,
            transition_key=record.transition_key,
            redrive_generation=record.redrive_generation,
            trace_id=uuid.uuid4().hex,
            deadline_epoch_ms=record.due_at_ms or 0,
            input=_wire_payload(record, contract, payload),
        )


def _wire_payload(record: ExecutionRecord, contract: Contract, payload: bytes | None) -> Payload:
    """Inline when small and at hand; otherwise a claim check the worker resolves."""
    ref = record.step_payload
    type_id = contract.steps[record.step_index].input_type_id
    if ref.tier == "inline":
        return Payload(payload_type_id=type_id, payload=ref.inline)
    if payload is not None and len(payload) <= INLINE_MESSAGE_LIMIT:
        return Payload(payload_type_id=type_id, payload=payload.decode())
    assert ref.tier in ("item", "s3"), f"a {ref.tier} payload is carried inline"
    return Payload(
        payload_type_id=type_id,
        payload_ref=PayloadRefWire(
            tier=ref.tier, digest=ref.digest, size=len(payload or b"") or None
        ),
    )
