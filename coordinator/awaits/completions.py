"""The completion queue consumer: providers' answers arriving over SQS.

A message is deleted once its completion is durable (recorded, or a duplicate of one that is),
or when it can never succeed (unknown interaction, conflicting answer, past the deadline, bad
token or payload). Anything transient leaves it for redelivery; a body that is not a completion
envelope is made visible again so the queue's redrive policy dead-letters it.
"""

from __future__ import annotations

import asyncio
import logging

from coordinator.awaits.service import AwaitService
from tpf import metrics
from tpf.codec import decode_value
from tpf.errors import Conflict, InvalidInput, NotFound
from tpf.loops import consume
from tpf.queues import Queue, Received
from tpf.settings import Timings
from tpf.wire import AwaitCompletion, MalformedMessage, decode

log = logging.getLogger("tpf.coordinator")


class CompletionConsumer:
    def __init__(self, *, queue: Queue, awaits: AwaitService, timings: Timings) -> None:
        self.queue, self.awaits, self.timings = queue, awaits, timings

    async def run(self, stop: asyncio.Event) -> None:
        wait_s = int(self.timings.long_poll.total_seconds())
        await consume(self.queue, self.handle, stop, wait_s=wait_s, what="completions")

    async def handle(self, message: Received) -> None:
        try:
            envelope = decode(message.body)
            if not isinstance(envelope, AwaitCompletion):
                raise MalformedMessage(f"a {envelope.kind} envelope on the completion queue")
        except MalformedMessage as exc:
            metrics.MESSAGES_REJECTED.labels(role="coordinator", reason="malformed").inc()
            log.warning(
                "completion rejected: %s",
                exc,
                extra={"action": "reject-message", "messageId": message.message_id},
            )
            await self.queue.change_visibility(message.receipt, 0)
            return
        try:
            response = decode_value(
                envelope.response_payload.payload_type_id, envelope.response_payload.payload or ""
            )
            await self.awaits.complete(
                envelope.tenant_id,
                response=response,
                interaction_id=envelope.interaction_id,
                correlation=envelope.correlation_id,
                resume_token=envelope.resume_token,
                idempotency_key=envelope.idempotency_key,
                actor=envelope.actor,
            )
        except (NotFound, Conflict, InvalidInput) as exc:
            # Deterministic: another delivery would be refused the same way.
            log.warning(
                "completion refused: %s",
                exc,
                extra={"action": "completion-refused", "messageId": message.message_id},
            )
        except Exception:
            log.exception(
                "completion failed; left for redelivery",
                extra={"action": "completion-failed", "messageId": message.message_id},
            )
            return
        await self.queue.delete(message.receipt)
