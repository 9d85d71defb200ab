"""Dead-letter envelopes: one for every execution that ends FAILED or DLQ (REFERENCE gap 1).

Each is also logged as TPF's coordinator logs it (``Execution moved to DLQ: …``, at ERROR), the
line TPF's incident tooling looks for in the coordinator's log.
"""

from __future__ import annotations

import logging

from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.queues import Outgoing, Queue
from tpf.records import ExecutionRecord, Status
from tpf.wire import DeadLetter, TerminalReason

log = logging.getLogger("tpf.coordinator")


class DeadLetterPublisher:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def dead_letter_parked(
        self,
        store: ExecutionStore,
        record: ExecutionRecord,
        *,
        error_code: str,
        message: str,
        now_ms: int,
    ) -> ExecutionRecord:
        """End a parked execution in DLQ (a re-drive runs its await step again) and publish it."""
        ended = await store.fail(
            record,
            transition_key=None,
            status=Status.DLQ,
            error_code=error_code,
            message=message,
            now_ms=now_ms,
        )
        metrics.TERMINAL_FAILURES.labels(status=Status.DLQ.value).inc()
        await self.publish(ended, reason=message, transition_key=None)
        return ended

    async def publish(
        self, record: ExecutionRecord, *, reason: str, transition_key: str | None
    ) -> None:
        assert record.status.value in ("FAILED", "DLQ"), record.status
        status = record.status.value
        envelope = DeadLetter(
            tenant_id=record.tenant_id,
            execution_id=record.execution_id,
            execution_key=record.execution_key,
            correlation_id=record.execution_key,
            pipeline_id=record.pipeline_id,
            release_version=record.release_version,
            transition_key=transition_key,
            status=status,  # type: ignore[arg-type]
            terminal_status=status,  # type: ignore[arg-type]
            reason=reason,
            terminal_reason=terminal_reason(record),
            error_code=record.error_code or "",
            error_message=record.error_message or "",
            retryable=record.status is Status.DLQ,
            attempts=record.attempt,
            retries_observed=record.attempt,
            created_at_epoch_ms=record.created_at_ms,
            failed_at_epoch_ms=record.updated_at_ms,
        )
        await self.queue.send(Outgoing(envelope.to_json()))
        log.error(
            "Execution moved to DLQ: tenant=%s execution=%s transition=%s status=%s reason=%s "
            "error=%s retryable=%s retriesObserved=%d transport=%s platform=%s",
            envelope.tenant_id,
            envelope.execution_id,
            transition_key,
            status,
            envelope.terminal_reason,
            envelope.error_message,
            str(envelope.retryable).lower(),
            envelope.retries_observed,
            "SQS",
            "AWS",
            extra={
                "action": "dead-letter",
                "executionId": record.execution_id,
                "transitionKey": transition_key,
                "status": status,
                "errorCode": envelope.error_code,
            },
        )


_REASONS: dict[str, TerminalReason] = {
    "AWAIT_TIMEOUT": "await_timeout",
    "AWAIT_NOT_OPENED": "await_not_opened",
    "CANCELLED": "cancelled",
}


def terminal_reason(record: ExecutionRecord) -> TerminalReason:
    """TPF's reason: retries ran out (DLQ), or the failure was final, or one of ours."""
    if record.status is Status.DLQ:
        return _REASONS.get(record.error_code or "", "retry_exhausted")
    return _REASONS.get(record.error_code or "", "non_retryable")
