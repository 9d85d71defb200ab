"""Committing transition outcomes (REFERENCE section 1, steps 4 and 5).

A result is committed only while the record is still in flight with the same transition key
and version; anything else is a late or duplicate result, rejected and counted. Committing a
COMPLETED transition and dispatching the next one is a single conditional write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.identities import await_unit_id
from coordinator.retries import decide
from coordinator.store import ExecutionStore
from coordinator.store.executions import ACTING_WORKER
from tpf import metrics
from tpf.contract import ContractRetry
from tpf.errors import InvalidInput, StaleRecord
from tpf.payloads import PayloadRef, PayloadStore
from tpf.record_size import Slot, inline_room
from tpf.records import ExecutionRecord, Status
from tpf.registry import Registry
from tpf.settings import RetryOverride
from tpf.wire import Failure, Payload, Suspension, TransitionResult

log = logging.getLogger("tpf.coordinator")

IN_FLIGHT = frozenset({Status.RUNNING, Status.WAIT_RETRY})


def overridden(policy: ContractRetry, override: RetryOverride | None) -> ContractRetry:
    """The step's retry policy with what configuration imposes (TPF's ``max-retries`` counts
    retries after the first attempt; its ``retry-delay`` is the first backoff)."""
    if override is None:
        return policy
    changes: dict[str, int] = {}
    if override.max_retries is not None:
        changes["max_attempts"] = override.max_retries + 1
    if override.retry_delay is not None:
        changes["base_delay_ms"] = int(override.retry_delay.total_seconds() * 1000)
    return policy.model_copy(update=changes)


class AwaitOpener(Protocol):
    """Called when a transition parks on an await; ``coordinator.awaits`` plugs in here."""

    def __call__(
        self, record: ExecutionRecord, suspension: Suspension, *, resume_step: int
    ) -> Awaitable[None]: ...


class TransitionCommitter:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        registry: Registry,
        payloads: PayloadStore,
        dispatcher: Dispatcher,
        dead_letters: DeadLetterPublisher,
        await_grace: timedelta,
        open_await: AwaitOpener | None = None,
        retry_override: Callable[[str], RetryOverride | None] = lambda pipeline_id: None,
    ) -> None:
        self.store, self.registry, self.payloads = store, registry, payloads
        self.dispatcher, self.dead_letters = dispatcher, dead_letters
        self.await_grace_ms = int(await_grace.total_seconds() * 1000)
        self.open_await = open_await
        self.retry_override = retry_override

    async def commit(self, result: TransitionResult, *, now_ms: int) -> ExecutionRecord | None:
        """Apply a worker's result; ``None`` when it was late, duplicate or unknown."""
        record = await self.store.get(result.tenant_id, result.execution_id)
        if record is None:
            self._reject(result, "unknown-execution")
            return None
        if (
            record.status not in IN_FLIGHT
            or record.transition_key != result.transition_key
            or record.version != result.execution_version
        ):
            await self._reopen_if_parked_by(record, result)
            self._reject(result, "stale")
            return None
        acting = ACTING_WORKER.set(result.worker.worker_id)
        try:
            committed = await self._apply(record, result, now_ms)
        except StaleRecord:  # a sweeper or another replica got there first
            self._reject(result, "stale")
            return None
        finally:
            ACTING_WORKER.reset(acting)
        metrics.TRANSITIONS.labels(role="coordinator", outcome=result.outcome).inc()
        return committed

    async def _apply(
        self, record: ExecutionRecord, result: TransitionResult, now_ms: int
    ) -> ExecutionRecord:
        key = result.transition_key
        if result.outcome == "FAILED":
            assert result.failure is not None
            return await self.fail_attempt(record, result.failure, now_ms=now_ms)
        if result.outcome == "WAITING_EXTERNAL":
            assert result.suspension is not None and result.next_step_index is not None
            return await self._park(record, result.suspension, result.next_step_index, now_ms)
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        assert result.output is not None and result.next_step_index is not None
        last = result.next_step_index >= len(contract.steps)
        data, ref = await self._stored(record, result.output, last=last)
        if last:
            return await self.store.succeed(record, transition_key=key, result=ref, now_ms=now_ms)
        running = await self.store.advance(
            record,
            transition_key=key,
            step_index=result.next_step_index,
            continuation=ref,
            now_ms=now_ms,
            dispatch_deadline_ms=self.dispatcher.deadline(now_ms),
        )
        await self.dispatcher.send(running, now_ms=now_ms, payload=data)
        return running

    async def fail_attempt(
        self,
        record: ExecutionRecord,
        failure: Failure,
        *,
        now_ms: int,
        timed_out: bool = False,
    ) -> ExecutionRecord:
        """Count a failed attempt: retry with backoff, or end FAILED / DLQ."""
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        step = contract.steps[min(failure.step_index or record.step_index, len(contract.steps) - 1)]
        retry_after = timedelta(milliseconds=failure.retry_after_ms or 0) or None
        decision = decide(
            overridden(step.retry, self.retry_override(record.pipeline_id)),
            failures=record.retries_used + 1,
            retryable=failure.retryable,
            retry_after=retry_after,
        )
        key = record.transition_key or ""
        if decision.action == "retry":
            metrics.RETRIES.labels(error_code=failure.error_code).inc()
            if decision.via_queue_delay:
                scheduled = await self.store.retry(
                    record,
                    transition_key=key,
                    error_code=failure.error_code,
                    message=failure.message,
                    due_at_ms=self.dispatcher.deadline(now_ms, decision.delay),
                    now_ms=now_ms,
                    next_transition_key=True,
                    timed_out=timed_out,
                )
                await self.dispatcher.send(scheduled, now_ms=now_ms, delay=decision.delay)
                return scheduled
            return await self.store.retry(
                record,
                transition_key=key,
                error_code=failure.error_code,
                message=failure.message,
                due_at_ms=now_ms + int(decision.delay.total_seconds() * 1000),
                now_ms=now_ms,
                timed_out=timed_out,
            )
        status = Status.DLQ if decision.action == "dlq" else Status.FAILED
        ended = await self.store.fail(
            record,
            transition_key=key,
            status=status,
            error_code=failure.error_code,
            message=failure.message,
            now_ms=now_ms,
            timed_out=timed_out,
        )
        metrics.TERMINAL_FAILURES.labels(status=status.value).inc()
        reason = "retries exhausted" if status is Status.DLQ else "non-retryable failure"
        await self.dead_letters.publish(ended, reason=reason, transition_key=key)
        return ended

    async def _park(
        self, record: ExecutionRecord, suspension: Suspension, next_step: int, now_ms: int
    ) -> ExecutionRecord:
        """Wait at the await. The record keeps the transition's start and input, so a re-drive
        after a timeout runs up to the await again and opens a fresh unit; the unit knows where
        to resume (``next_step``) once answered.

        The record is due a grace after the unit's deadline: by then the await sweeper has
        settled the unit, and the sweeper settles a record whose unit never opened."""
        unit_id = await_unit_id(record, suspension.step_id, suspension.step_index)
        parked = await self.store.park(
            record,
            transition_key=record.transition_key or "",
            await_unit_id=unit_id,
            step_index=record.step_index,
            continuation=None,
            now_ms=now_ms,
            due_at_ms=now_ms + suspension.timeout_ms + self.await_grace_ms,
        )
        return await self._open(parked, suspension, next_step)

    async def _open(
        self, parked: ExecutionRecord, suspension: Suspension, next_step: int
    ) -> ExecutionRecord:
        """Open the unit; requests that can never be opened dead-letter the execution at once
        (a re-drive runs the step again). Any other failure propagates: the result message
        is delivered again and opening, which is idempotent, is retried."""
        if self.open_await is None:
            return parked
        try:
            await self.open_await(parked, suspension, resume_step=next_step)
        except InvalidInput as exc:
            return await self.dead_letters.dead_letter_parked(
                self.store,
                parked,
                error_code="AWAIT_REQUEST_INVALID",
                message=f"the requests of {suspension.step_id!r} cannot be opened: {exc}",
                now_ms=parked.updated_at_ms,
            )
        return parked

    async def _reopen_if_parked_by(self, record: ExecutionRecord, result: TransitionResult) -> None:
        """A redelivered park result whose commit landed but whose unit may not have opened
        (the committing replica died in between): opening is idempotent, so do it again."""
        suspension = result.suspension
        if (
            self.open_await is None
            or suspension is None
            or result.next_step_index is None
            or record.status is not Status.WAITING_EXTERNAL
            or record.version != result.execution_version + 1
            or record.await_unit_id
            != await_unit_id(record, suspension.step_id, suspension.step_index)
        ):
            return
        await self._open(record, suspension, result.next_step_index)

    async def _stored(
        self, record: ExecutionRecord, payload: Payload, *, last: bool
    ) -> tuple[bytes | None, PayloadRef]:
        """The output's bytes (when carried inline) and its reference, written once."""
        if payload.payload_ref is not None:
            ref = PayloadRef(tier=payload.payload_ref.tier, digest=payload.payload_ref.digest)
            return None, ref
        data = (payload.payload or "null").encode()
        slot: Slot = "result" if last else "continuation"
        ref = await self.payloads.put(
            record.tenant_id, record.execution_id, data, inline_limit=inline_room(record, slot)
        )
        return data, ref

    def _reject(self, result: TransitionResult, reason: str) -> None:
        metrics.RESULTS_REJECTED.labels(reason=reason).inc()
        log.info(
            "result rejected",
            extra={
                "action": "reject-result",
                "reason": reason,
                "executionId": result.execution_id,
                "transitionKey": result.transition_key,
            },
        )
