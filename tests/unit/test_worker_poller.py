from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from examples.orders import orders
from tests.unit.commands import first_command
from tests.waiting import until
from tests.workers import ORDER, Gate
from tpf.payloads import PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.pipeline import Pipeline
from tpf.queues import InMemoryQueue, Outgoing, Received
from tpf.settings import Settings
from tpf.signing import Signer, SigningKey
from tpf.wire import Heartbeat, TransitionCommand, TransitionResult, WorkerIdentity, decode
from worker.fence import TransitionFence
from worker.poller import TransitionWorker, epoch_ms

IDENTITY = WorkerIdentity(worker_id="w-1", release_version="1.0.0")
SIGNER = Signer(SigningKey(b"unit-test-key"))


def rejected(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "tpf_messages_rejected_total", {"role": "worker", "queue": "work", "reason": reason}
        )
        or 0.0
    )


class Harness:
    def __init__(
        self,
        *pipelines: Pipeline,
        concurrency: int = 4,
        work: InMemoryQueue | None = None,
        fence: TransitionFence | None = None,
    ) -> None:
        self.work = work or InMemoryQueue("work", visibility_s=5)
        self.results = InMemoryQueue("results")
        self.payloads = PayloadStore(InMemoryPayloadBackend())
        self.worker = TransitionWorker(
            pipelines={p.id: p for p in pipelines},
            work=self.work,
            results=self.results,
            payloads=self.payloads,
            signer=SIGNER,
            settings=Settings(profile="test"),
            identity=IDENTITY,
            concurrency=concurrency,
            fence=fence,
        )

    def command(
        self, pipeline: Pipeline, value: object, execution: str = "e-1"
    ) -> TransitionCommand:
        return first_command(pipeline, value, execution)

    async def send(self, command: TransitionCommand, *, signed: bool = True) -> str:
        if signed:
            command = SIGNER.sign(command, channel="work", now_ms=epoch_ms(), ttl_ms=60_000)
        return await self.send_raw(command.to_json())

    async def send_raw(self, body: str) -> str:
        await self.work.send(Outgoing(body))
        return max(self.work.messages, key=lambda m: int(m.removeprefix("m-")))

    def envelopes(self) -> list[TransitionResult | Heartbeat]:
        found = []
        for stored in self.results.messages.values():
            envelope = decode(stored.body)
            assert isinstance(envelope, TransitionResult | Heartbeat)
            SIGNER.verify(envelope, channel="results", now_ms=epoch_ms())
            found.append(envelope)
        return found

    def outcomes(self) -> list[TransitionResult]:
        return [e for e in self.envelopes() if isinstance(e, TransitionResult)]


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Harness]]:
    harnesses: list[tuple[Harness, asyncio.Task[None]]] = []

    def start(*pipelines: Pipeline, **options: Any) -> Harness:
        harness = Harness(*pipelines, **options)
        harnesses.append((harness, asyncio.create_task(harness.worker.run())))
        return harness

    yield start
    for harness, task in harnesses:
        await harness.worker.stop()
        await task


async def test_a_signed_command_produces_a_signed_result_and_is_then_deleted(
    started: Callable[..., Harness],
) -> None:
    h = started(orders)
    await h.send(h.command(orders, ORDER))
    await until(lambda: not h.work.messages and len(h.results.messages) == 1)
    [result] = h.outcomes()  # outcomes() verifies each signature on the results channel
    assert (result.outcome, result.transition_key, result.worker) == (
        "COMPLETED",
        "e-1:0:1",
        IDENTITY,
    )
    assert result.signature is not None


async def test_an_unsigned_command_is_rejected_deleted_and_never_run(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    before = rejected("signature")
    await h.send(h.command(gate.pipeline, {"name": "unsigned"}), signed=False)
    await until(lambda: not h.work.messages)
    assert (gate.started, h.results.messages, rejected("signature")) == ([], {}, before + 1)


async def test_a_command_past_its_deadline_is_dropped_unrun(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    before = rejected("past_deadline")
    late = h.command(gate.pipeline, {"name": "late"}).model_copy(
        update={"deadline_epoch_ms": epoch_ms() - 1}
    )
    await h.send(late)
    await until(lambda: not h.work.messages)
    assert (gate.started, h.results.messages, rejected("past_deadline")) == ([], {}, before + 1)


async def test_a_command_close_to_its_deadline_heartbeats_as_soon_as_it_starts(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    close = h.command(gate.pipeline, {"name": "close"}).model_copy(
        update={"deadline_epoch_ms": epoch_ms() + 500}  # under one transition timeout left
    )
    await h.send(close)
    await until(lambda: gate.started == ["close"])
    await until(lambda: any(isinstance(e, Heartbeat) for e in h.envelopes()), timeout=0.4)
    gate.opened.set()


async def test_a_tampered_command_is_rejected_and_never_run(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    signed = SIGNER.sign(
        h.command(gate.pipeline, {"name": "a"}), channel="work", now_ms=epoch_ms(), ttl_ms=60_000
    )
    tampered = signed.model_copy(update={"attempt": 7})
    await h.send_raw(tampered.to_json())
    await until(lambda: not h.work.messages)
    assert (gate.started, h.results.messages) == ([], {})


async def test_a_malformed_body_is_never_run_and_is_made_visible_again_for_the_dlq(
    started: Callable[..., Harness],
) -> None:
    h = started(orders)
    before = rejected("malformed")
    message_id = await h.send_raw('{"kind": "command", "tenantId": 42}')
    # Redelivered at once: the queue's maxReceiveCount, not the worker, retires it to the DLQ.
    await until(lambda: h.work.messages[message_id].receives >= 2)
    assert h.results.messages == {}
    assert rejected("malformed") >= before + 2


async def test_a_command_for_a_pipeline_this_worker_does_not_host_is_handed_back(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(orders)
    message_id = await h.send(h.command(gate.pipeline, {"name": "elsewhere"}))
    await until(lambda: h.work.messages[message_id].receives >= 2)
    assert (gate.started, h.results.messages) == ([], {})


async def test_a_command_pinned_to_another_contract_is_handed_back(
    started: Callable[..., Harness],
) -> None:
    h = started(orders)
    other = h.command(orders, ORDER).model_copy(update={"contract_version": "sha256:other"})
    message_id = await h.send(other)
    await until(lambda: h.work.messages[message_id].receives >= 2)
    assert h.results.messages == {}


async def test_a_long_step_sends_heartbeats_and_keeps_its_command_invisible(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    message_id = await h.send(h.command(gate.pipeline, {"name": "long"}))
    await until(lambda: gate.started == ["long"])
    first_deadline = h.work.messages[message_id].visible_at
    await until(lambda: any(isinstance(e, Heartbeat) for e in h.envelopes()))
    await until(lambda: h.work.messages[message_id].visible_at > first_deadline)
    gate.opened.set()
    await until(lambda: not h.work.messages and len(h.outcomes()) == 1)
    beat = next(e for e in h.envelopes() if isinstance(e, Heartbeat))
    assert (beat.transition_key, beat.execution_version, beat.worker) == ("e-1:0:1", 1, IDENTITY)


async def test_stop_lets_in_flight_work_finish_and_takes_no_new_messages(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    await h.send(h.command(gate.pipeline, {"name": "in-flight"}, execution="e-1"))
    await until(lambda: gate.started == ["in-flight"])
    stopping = asyncio.create_task(h.worker.stop())
    await until(lambda: h.worker.state == "draining")
    late = await h.send(h.command(gate.pipeline, {"name": "late"}, execution="e-2"))
    assert not stopping.done()
    gate.opened.set()
    await stopping
    assert h.worker.state == "stopped"
    assert [r.execution_id for r in h.outcomes()] == ["e-1"]
    assert list(h.work.messages) == [late]
    assert h.work.messages[late].receives == 0
    assert gate.started == ["in-flight"]


async def test_work_unfinished_within_the_grace_period_is_handed_back(
    started: Callable[..., Harness],
) -> None:
    gate = Gate()
    h = started(gate.pipeline)
    h.worker.timings = h.worker.timings.model_copy(update={"shutdown_grace": timedelta(0)})
    message_id = await h.send(h.command(gate.pipeline, {"name": "stuck"}))
    await until(lambda: gate.started == ["stuck"])
    await h.worker.stop()
    stored = h.work.messages[message_id]
    assert stored.visible_at <= asyncio.get_running_loop().time()
    # No result: only a last heartbeat, so the deadline counts from the hand-back and the next
    # worker takes the same attempt over.
    sent = [json.loads(m.body) for m in h.results.messages.values()]
    assert [(m["kind"], m["transitionKey"]) for m in sent] == [("heartbeat", "e-1:0:1")]


class FlakyQueue(InMemoryQueue):
    """Fails its first receive, as an SQS endpoint might."""

    def __init__(self) -> None:
        super().__init__("work", visibility_s=5)
        self.failures = 1

    async def receive(self, *, max_messages: int = 10, wait_s: int = 20) -> list[Received]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("endpoint unreachable")
        return await super().receive(max_messages=max_messages, wait_s=wait_s)


async def test_a_transient_receive_error_does_not_stop_the_worker(
    started: Callable[..., Harness],
) -> None:
    flaky = FlakyQueue()
    h = started(orders, work=flaky)
    await h.send(h.command(orders, ORDER))
    await until(lambda: not flaky.messages and len(h.results.messages) == 1)
    assert flaky.failures == 0


class RefusingQueue(InMemoryQueue):
    """A results queue that cannot be reached."""

    def __init__(self) -> None:
        super().__init__("results")
        self.attempts = 0

    async def send(self, message: Outgoing) -> None:
        self.attempts += 1
        raise ConnectionError("results queue unreachable")


async def test_a_result_that_cannot_be_sent_leaves_the_command_for_redelivery(
    started: Callable[..., Harness],
) -> None:
    h = started(orders)
    refusing = RefusingQueue()
    h.results = h.worker.results = refusing
    message_id = await h.send(h.command(orders, ORDER))
    await until(lambda: refusing.attempts == 1)
    # Not deleted, not handed back: it reappears after its visibility timeout and runs again.
    stored = h.work.messages[message_id]
    assert stored.receives == 1
    assert stored.visible_at > asyncio.get_running_loop().time()


class BrokenFence:
    """A fence with a bug for one execution: whatever a handler raises stays with its message."""

    async def is_live(self, command: TransitionCommand) -> bool:
        if command.execution_id == "e-bug":
            raise TypeError("a bug in the fence")
        return True


async def test_a_message_whose_handling_raises_is_counted_left_for_the_dlq_and_the_rest_run(
    started: Callable[..., Harness],
) -> None:
    h = started(orders, fence=BrokenFence())
    before = rejected("unexpected")
    buggy = await h.send(h.command(orders, ORDER, execution="e-bug"))
    await until(lambda: rejected("unexpected") == before + 1)
    await h.send(h.command(orders, ORDER, execution="e-fine"))
    await until(lambda: any(isinstance(e, TransitionResult) for e in h.envelopes()))
    assert buggy in h.work.messages, "left in flight: redelivered, then dead-lettered by SQS"
