"""Dead-letter envelopes: one for every execution that ends FAILED or DLQ (REFERENCE gap 1)."""

from __future__ import annotations

import logging

from tpf.queues import Outgoing, Queue
from tpf.records import ExecutionRecord
from tpf.wire import DeadLetter

log = logging.getLogger("tpf.coordinator")


class DeadLetterPublisher:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def publish(
        self, record: ExecutionRecord, *, reason: str, transition_key: str | None
    ) -> None:
        assert record.status.value in ("FAILED", "DLQ"), record.status
        envelope = DeadLetter(
            tenant_id=record.tenant_id,
            execution_id=record.execution_id,
            execution_key=record.execution_key,
            pipeline_id=record.pipeline_id,
            release_version=record.release_version,
            transition_key=transition_key,
            status=record.status.value,  # type: ignore[arg-type]
            reason=reason,
            error_code=record.error_code or "",
            error_message=record.error_message or "",
            attempts=record.attempt,
            created_at_epoch_ms=record.created_at_ms,
            failed_at_epoch_ms=record.updated_at_ms,
        )
        await self.queue.send(Outgoing(envelope.to_json()))
        log.info(
            "dead letter published",
            extra={
                "action": "dead-letter",
                "executionId": record.execution_id,
                "transitionKey": transition_key,
                "status": record.status.value,
            },
        )
