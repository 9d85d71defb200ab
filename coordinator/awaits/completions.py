"""The completion queue consumer: providers' answers arriving over SQS, judged in batches.

A round takes up to ``ROUND`` messages (one long poll, then short receives while the queue is
full) and records them with one transaction per unit (``AwaitService.complete_many``), so an
itemized await of 10,000 rows costs a few hundred writes, not 10,000.

A message is deleted once its completion is durable (recorded, or a duplicate of one that is),
or when it can never succeed (unknown interaction, conflicting answer, past the deadline, bad
token or payload). An outage leaves the round for redelivery; a body that is not a completion
envelope is made visible again so the queue's redrive policy dead-letters it.

Besides our signed envelope, TPF's providers' own form is read (``ProviderCompletion``: no
``kind``, the answer as a plain object), so a provider written for TPF answers unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Literal

from coordinator.awaits.completing import CompletionRequest
from coordinator.awaits.service import AwaitService
from tpf import metrics
from tpf.clock import now_ms
from tpf.codec import decode_value
from tpf.errors import Conflict, InvalidInput, NotFound, TpfError
from tpf.loops import message_failed, pause
from tpf.queues import BATCH, Queue, Received
from tpf.settings import Timings
from tpf.signing import ProviderKeys, SignatureRejected
from tpf.untrusted import check_bounds
from tpf.wire import (
    AwaitCompletion,
    MalformedMessage,
    ProviderCompletion,
    decode,
    decode_provider_completion,
)

log = logging.getLogger("tpf.coordinator")

ROUND = 10 * BATCH
"""Messages judged together; more share a transaction, but wait longer for the round."""
ROUNDS_AT_ONCE = 2
REFUSALS = (NotFound, Conflict, InvalidInput)
"""Deterministic: another delivery would be refused the same way."""


class CompletionConsumer:
    def __init__(
        self,
        *,
        queue: Queue,
        awaits: AwaitService,
        timings: Timings,
        provider_auth: Literal["enforce", "warn"] = "enforce",
        provider_keys: ProviderKeys | None = None,
    ) -> None:
        self.queue, self.awaits, self.timings = queue, awaits, timings
        self.provider_auth = provider_auth
        self.provider_keys = provider_keys or ProviderKeys({})

    async def run(self, stop: asyncio.Event) -> None:
        # Rounds wait mostly on DynamoDB and SQS: a few at once keep both busy.
        await asyncio.gather(*(self._rounds(stop) for _ in range(ROUNDS_AT_ONCE)))

    async def _rounds(self, stop: asyncio.Event) -> None:
        wait_s = max(1, int(self.timings.long_poll.total_seconds()))
        while not stop.is_set():
            try:
                messages = await self._receive_round(wait_s)
            except Exception:
                log.exception(
                    "receiving completions failed", extra={"action": "receive-completions"}
                )
                await pause(stop, 1.0)
                continue
            if messages:
                await self.handle_many(messages)  # never raises

    async def _receive_round(self, wait_s: int) -> list[Received]:
        # Long-poll once; only a full batch suggests more is waiting right now.
        messages = await self.queue.receive(wait_s=wait_s)
        while len(messages) < ROUND and len(messages) % BATCH == 0 and messages:
            more = await self.queue.receive(wait_s=0)
            if not more:
                break
            messages.extend(more)
        return messages

    async def handle(self, message: Received) -> None:
        await self.handle_many([message])

    async def handle_many(self, messages: list[Received]) -> None:
        """Never raises: whatever is not settled here is redelivered."""
        accepted: list[tuple[Received, CompletionRequest]] = []
        settled: list[Received] = []
        for message in messages:
            try:
                accepted.append((message, self._verified(message, *self._request(message))))
            except MalformedMessage as exc:
                await self._release_malformed(message, exc)
            except InvalidInput as exc:
                self._refused(message, exc)
                settled.append(message)
            except Exception as exc:  # a bug, not the message's fault: keep it for the DLQ
                message_failed(exc, message, queue="completions", role="coordinator")
        if accepted:
            try:
                outcomes = await self.awaits.complete_many([r for _, r in accepted])
            except Exception:
                log.exception(
                    "completions failed; left for redelivery",
                    extra={"action": "completion-failed", "messages": len(accepted)},
                )
                outcomes = []
            for (message, _), outcome in zip(accepted, outcomes, strict=False):
                if isinstance(outcome, REFUSALS):
                    self._refused(message, outcome)
                elif isinstance(outcome, TpfError):
                    continue  # transient: another delivery may succeed
                settled.append(message)
        results = await asyncio.gather(
            *(self.queue.delete(m.receipt) for m in settled), return_exceptions=True
        )
        for failure in (r for r in results if isinstance(r, BaseException)):
            log.warning(
                "completion message not deleted; it will come back as a duplicate: %s",
                failure,
                extra={"action": "completion-delete-failed"},
            )

    def _request(self, message: Received) -> tuple[CompletionRequest, object]:
        """The completion, and the envelope it came in (whose signature may be checked)."""
        try:
            envelope = decode(message.body)
        except MalformedMessage as ours:
            try:
                theirs = decode_provider_completion(message.body)
            except MalformedMessage:
                raise ours from None
            return _from_tpf_provider(theirs), theirs
        if not isinstance(envelope, AwaitCompletion):
            raise MalformedMessage(f"a {envelope.kind} envelope on the completion queue")
        payload = envelope.response_payload
        return CompletionRequest(
            tenant_id=envelope.tenant_id,
            response=decode_value(payload.payload_type_id, payload.payload or ""),
            interaction_id=envelope.interaction_id,
            correlation=envelope.correlation_id,
            resume_token=envelope.resume_token,
            idempotency_key=envelope.idempotency_key,
            actor=envelope.actor,
        ), envelope

    def _verified(
        self, message: Received, request: CompletionRequest, envelope: object
    ) -> CompletionRequest:
        """Anything that can send to this queue could otherwise answer any interaction it can
        name: a completion must echo its request's resume token (signed, naming the tenant
        and the interaction), which the recorder then checks against the interaction; with
        provider keys configured, it must also be signed by a provider's key."""
        if request.resume_token is None:
            self._unverified(
                message,
                "unverified",
                "a provider's completion must echo its request's resumeToken",
                pointer="/resumeToken",
            )
        if self.provider_keys:
            try:
                provider = self.provider_keys.verify(envelope, now_ms=now_ms())
            except SignatureRejected as exc:
                self._unverified(
                    message,
                    exc.reason,
                    f"a provider's completion must be signed with its key ({exc.reason})",
                    pointer="/signature",
                )
            else:
                request = replace(request, actor=request.actor or provider)
        return request

    def _unverified(self, message: Received, reason: str, why: str, *, pointer: str) -> None:
        """Count it; refuse it, unless ``TPF_PROVIDER_AUTH=warn`` lets it through, logged."""
        metrics.MESSAGES_REJECTED.labels(
            role="coordinator", queue="completions", reason=reason
        ).inc()
        if self.provider_auth == "warn":
            log.warning(
                "completion accepted unverified (TPF_PROVIDER_AUTH=warn): %s",
                why,
                extra={"action": "completion-unverified", "messageId": message.message_id},
            )
            return
        raise InvalidInput(why, pointer=pointer)

    async def _release_malformed(self, message: Received, exc: Exception) -> None:
        metrics.MESSAGES_REJECTED.labels(
            role="coordinator", queue="completions", reason="malformed"
        ).inc()
        log.warning(
            "completion rejected: %s",
            exc,
            extra={"action": "reject-message", "messageId": message.message_id},
        )
        try:
            await self.queue.change_visibility(message.receipt, 0)
        except Exception:
            log.exception("could not release a malformed completion; it reappears later")

    def _refused(self, message: Received, exc: Exception) -> None:
        log.warning(
            "completion refused: %s",
            exc,
            extra={"action": "completion-refused", "messageId": message.message_id},
        )


def _from_tpf_provider(completion: ProviderCompletion) -> CompletionRequest:
    """TPF's providers answer with the plain response and echo the request's resume token."""
    check_bounds(completion.response_payload, pointer="/responsePayload")
    return CompletionRequest(
        tenant_id=completion.tenant_id,
        response=completion.response_payload,
        interaction_id=completion.interaction_id,
        correlation=completion.correlation_id,
        resume_token=completion.resume_token,
        idempotency_key=completion.idempotency_key,
        actor=completion.actor,
    )
