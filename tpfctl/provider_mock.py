"""A payment provider that answers await requests over SQS, for demos and load tests.

For each ``AwaitRequest`` on the await request queue it sends one ``AwaitCompletion`` (ids copied
from the request, the decision as ``payments.ProviderAnswer``) on the completion queue, then
deletes the request. ``MockBehaviour`` makes it late, lossy or duplicating, within a rate limit:

* a request is deleted only once its answer(s) were sent, or when it is dropped on purpose (the
  provider "lost" it; the await deadline must deal with that);
* a message that is not an ``AwaitRequest``, or whose payload cannot be decided, is made visible
  again at once so the queue's redrive policy dead-letters it; the loop never crashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tpf.errors import ConfigurationError
from tpf.loops import BoundedReceiver
from tpf.queues import BATCH, Outgoing, Queue, Received
from tpf.signing import PROVIDER_CHANNEL, Signer
from tpf.wire import AwaitCompletion, AwaitRequest, MalformedMessage, Payload, decode

log = logging.getLogger("tpf.provider")

ACTOR = "provider-mock"
ANSWER_TYPE = "payments.ProviderAnswer"
SIGNATURE_TTL_MS = 15 * 60 * 1000
"""How long a signed answer stays valid: longer than it may wait on the completion queue."""
RECORDS_MODULE = "examples.csv_payments.records"

Decide = Callable[[dict[str, Any]], dict[str, Any]]
"""A request payload → the answer's JSON document."""


def load_default_decide() -> Decide:
    """The CSV payments example's decision; ConfigurationError when that module is missing."""
    try:
        records = importlib.import_module(RECORDS_MODULE)
        record_type, provider_decision = records.PaymentRecord, records.provider_decision
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"the default decision needs {RECORDS_MODULE} (PaymentRecord, provider_decision): {exc}"
        ) from exc

    def decide(payload: dict[str, Any]) -> dict[str, Any]:
        answer = provider_decision(record_type.model_validate(payload))
        return dict(answer.model_dump(mode="json", by_alias=True))

    return decide


def default_decide(payload: dict[str, Any]) -> dict[str, Any]:
    return load_default_decide()(payload)


@dataclass(frozen=True)
class MockBehaviour:
    delay_s: float = 0.0
    """Answer this long after receiving the request (0 allowed)."""
    drop_rate: float = 0.0
    """Fraction of requests never answered (still deleted)."""
    duplicate_rate: float = 0.0
    """Fraction of requests answered twice with the same completion."""
    per_second: float = 200.0
    """Rate limit on completions sent, shared by all requests."""
    seed: int | None = None
    """Makes drop/duplicate choices a function of (seed, interaction id, times seen): reruns
    choose the same, and a request sent again is not doomed to the same fate."""

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ConfigurationError(f"delay must be >= 0, got {self.delay_s}")
        for name in ("drop_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigurationError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if not self.per_second > 0:
            raise ConfigurationError(f"rate must be > 0 per second, got {self.per_second}")

    def chance(self, what: str, interaction_id: str, seen: int = 1) -> float:
        """A number in [0, 1): random, or derived from the seed, the interaction and how many
        times this request was seen (a request sent again gets a fresh draw)."""
        if self.seed is None:
            return random.random()
        material = f"{self.seed}:{what}:{interaction_id}:{seen}"
        digest = hashlib.sha256(material.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


class Pacer:
    """An async token bucket: ``per_second`` tokens, bursts of up to ``burst``, callers in order."""

    def __init__(self, per_second: float, burst: int = BATCH) -> None:
        self.per_second, self.burst = per_second, burst
        self._tokens = float(burst)
        self._updated: float | None = None

    async def acquire(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._updated is not None:
            elapsed = now - self._updated
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_second)
        self._updated = now
        self._tokens -= 1  # reserve now (possibly into debt), then wait the debt out
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.per_second)


class ProviderMock:
    def __init__(
        self,
        *,
        requests: Queue,
        completions: Queue,
        behaviour: MockBehaviour,
        decide: Decide = default_decide,
        wait_s: int = 20,
        grace_s: float = 5.0,
        max_inflight: int | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.requests, self.completions = requests, completions
        self.signer = signer
        self.behaviour, self.decide = behaviour, decide
        self.wait_s, self.grace_s = wait_s, grace_s
        self.pacer = Pacer(behaviour.per_second)
        # Take no more than about a second's answers beyond the delay: a request held longer than
        # its visibility timeout would be delivered (and answered) again.
        self.max_inflight = max_inflight or max(
            BATCH, int(behaviour.per_second * (behaviour.delay_s + 1))
        )
        self.stats: Counter[str] = Counter(
            received=0, answered=0, dropped=0, duplicated=0, malformed=0
        )
        """``received`` counts every message, ``malformed`` the ones handed back for the DLQ;
        ``answered`` counts requests answered (``duplicated`` those answered twice)."""
        self._inflight: dict[asyncio.Task[None], str] = {}
        self._seen: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and answer until ``stop`` is set; then finish in-flight answers within grace."""
        log.info(
            "provider mock ready",
            extra={"action": "start", "queue": self.requests.name, "behaviour": self.behaviour},
        )
        stopped = asyncio.create_task(stop.wait())
        receiver = BoundedReceiver(self.requests, capacity=self.max_inflight, wait_s=self.wait_s)
        try:
            while not stop.is_set():
                batch = await receiver.next(set(self._inflight), stopped)
                if batch is None:
                    break
                received_at = asyncio.get_running_loop().time()
                for message in batch:
                    task = asyncio.create_task(self._handle(message, received_at))
                    self._inflight[task] = message.receipt
                    task.add_done_callback(self._forget)
        finally:
            stopped.cancel()
            await self._drain()
            log.info("provider mock stopped", extra={"action": "stop", **self.stats})

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)

    async def _drain(self) -> None:
        if not self._inflight:
            return
        _, unfinished = await asyncio.wait(set(self._inflight), timeout=self.grace_s)
        receipts = [self._inflight[task] for task in unfinished]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
            # Unanswered requests go back at once, for the next provider to answer.
            await asyncio.gather(
                *(self.requests.change_visibility(r, 0) for r in receipts), return_exceptions=True
            )

    async def _handle(self, message: Received, received_at: float) -> None:
        self.stats["received"] += 1
        try:
            envelope = decode(message.body)
            if not isinstance(envelope, AwaitRequest):
                raise MalformedMessage(f"a {envelope.kind} envelope, not an await-request")
            request = envelope
            answer = self.decide(request.request_payload)
        except Exception as exc:  # malformed or undecidable: let redrive dead-letter it
            self.stats["malformed"] += 1
            log.warning(
                "request rejected: %s",
                exc,
                extra={"action": "request-malformed", "messageId": message.message_id},
            )
            await self._try(self.requests.change_visibility(message.receipt, 0), message)
            return
        fields = {
            "executionId": request.execution_id,
            "interactionId": request.interaction_id,
            "idempotencyKey": request.idempotency_key,
        }
        behaviour = self.behaviour
        self._seen[request.interaction_id] += 1
        seen = self._seen[request.interaction_id]
        if behaviour.chance("drop", request.interaction_id, seen) < behaviour.drop_rate:
            if await self._try(self.requests.delete(message.receipt), message):
                self.stats["dropped"] += 1
                log.info("request dropped", extra={"action": "request-dropped", **fields})
            return
        duplicate = (
            behaviour.chance("duplicate", request.interaction_id, seen) < behaviour.duplicate_rate
        )
        copies = 2 if duplicate else 1
        due = received_at + behaviour.delay_s
        while (wait := due - asyncio.get_running_loop().time()) > 0:  # timers may fire early
            await asyncio.sleep(wait)
        answered = completion(request, answer)
        if self.signer is not None:  # the provider's own key, on top of the resume token
            now = int(time.time() * 1000)
            answered = self.signer.sign(
                answered, channel=PROVIDER_CHANNEL, now_ms=now, ttl_ms=SIGNATURE_TTL_MS
            )
        body = answered.to_json()
        for _ in range(copies):
            await self.pacer.acquire()
            if not await self._try(self.completions.send(Outgoing(body)), message):
                return  # not deleted: the request reappears after its visibility timeout
        if await self._try(self.requests.delete(message.receipt), message):
            self.stats["answered"] += 1
            self.stats["duplicated"] += copies - 1
            log.info("request answered", extra={"action": "request-answered", **fields})

    async def _try(self, call: Awaitable[None], message: Received) -> bool:
        try:
            await call
        except Exception as exc:
            log.warning(
                "queue call failed: %s",
                exc,
                extra={"action": "queue-failed", "messageId": message.message_id},
            )
            return False
        return True


def completion(request: AwaitRequest, answer: dict[str, Any]) -> AwaitCompletion:
    return AwaitCompletion(
        tenant_id=request.tenant_id,
        interaction_id=request.interaction_id,
        correlation_id=request.correlation_id,
        resume_token=request.resume_token,  # what authenticates the answer, as TPF's providers do
        idempotency_key=request.idempotency_key,
        response_payload=Payload(payload_type_id=ANSWER_TYPE, payload=json.dumps(answer)),
        actor=ACTOR,
        completed_at_epoch_ms=int(time.time() * 1000),
    )
