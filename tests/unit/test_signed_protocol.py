"""The signed SQS protocol, end to end: the in-memory coordinator and a real CommandHandler.

What it proves (REFERENCE sections 1 and 4): a message that is unsigned, tampered with, expired
or signed with a key nobody holds is rejected, counted, logged and deleted on either side, and a
command among them never runs. Signatures carry an expiry instead of a nonce, so a redelivery and a
retry delayed 900 s still run; replays are stopped by fencing (transition key + version), on the
worker before the step runs and on the coordinator before anything commits.

Two clocks: the worker's is explicit (``clock=``); the results consumer reads the wall clock. The
executions start twenty minutes ago (``Rig.t0``), so everything a worker signs lies in the
coordinator's past, as it would in a deployment.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client import REGISTRY

from coordinator.testing import TEST_KEY, InMemoryCoordinator
from tests.e2e.pipelines import slow
from tests.unit.commands import StoreFence
from tests.unit.drive import failed
from tpf.clock import now_ms
from tpf.queues import InMemoryQueue, Outgoing, Received
from tpf.records import ExecutionRecord, Status
from tpf.signing import Signer, SigningKey
from tpf.wire import (
    Heartbeat,
    Misrouted,
    Payload,
    TransitionCommand,
    TransitionResult,
    Wire,
    WorkerIdentity,
    decode,
)
from worker.command import CommandHandler, Settlement

W = TypeVar("W", bound=Wire)

SECOND, MINUTE, HOUR = 1_000, 60_000, 3_600_000
TENANT = "acme"
STRANGER = Signer(SigningKey(b"a key nobody gave the coordinator"))
FORGERIES = ["unsigned", "tampered", "expired", "unknown key"]
"""How a message can fail its signature; the coordinator counts each under its own reason."""


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def forge(envelope: W, forgery: str, *, channel: str, tamper: Callable[[W], W]) -> W:
    """``envelope`` (genuinely signed) as an attacker or a broken clock would deliver it."""
    if forgery == "unsigned":
        return envelope.model_copy(update={"signature": None})
    if forgery == "tampered":
        return tamper(envelope)  # a field changed after signing, the signature kept
    if forgery == "expired":
        return Signer(TEST_KEY).sign(
            envelope, channel=channel, now_ms=now_ms() - 2 * HOUR, ttl_ms=HOUR
        )
    assert forgery == "unknown key"
    return STRANGER.sign(envelope, channel=channel, now_ms=now_ms(), ttl_ms=HOUR)


class RefusingQueue(InMemoryQueue):
    """A results queue the worker cannot reach: its result is never sent."""

    async def send(self, message: Outgoing) -> None:
        raise ConnectionError("results queue unreachable")


@dataclass
class Rig:
    """The coordinator, the marker folder where every run of ``slow``'s step leaves its
    transition key, and the time the executions of a test start at."""

    c: InMemoryCoordinator
    markers: Path
    t0: int

    def worker(
        self,
        *,
        at: int | None = None,
        signer: Signer | None = None,
        release: str = "1.0.0",
        results: InMemoryQueue | None = None,
    ) -> CommandHandler:
        """A worker of ``release`` whose clock reads ``at`` (a second after ``t0`` unless told)."""
        clock = self.t0 + SECOND if at is None else at
        return CommandHandler(
            pipelines={slow.id: slow},
            results=self.c.results_queue if results is None else results,
            payloads=self.c.payloads,
            signer=signer or self.c.signer,
            timings=self.c.settings.timings,
            identity=WorkerIdentity(worker_id=f"w-{release}", release_version=release),
            clock=lambda: clock,
            fence=StoreFence(self.c.store),
        )

    def runs(self) -> list[str]:
        """The transition key of every run of the step so far."""
        return sorted(marker.read_text() for marker in self.markers.glob("work.*"))

    async def submit(self) -> str:
        outcome = await self.c.service.submit(
            tenant_id=TENANT,
            pipeline_id=slow.id,
            value={"name": "job"},
            idempotency_key=uuid.uuid4().hex,
            now_ms=self.t0,
        )
        return outcome.record.execution_id

    async def record(self, execution_id: str) -> ExecutionRecord:
        return await self.c.service.status(TENANT, execution_id)

    async def command(self) -> tuple[Received, TransitionCommand]:
        """The one command waiting in release 1.0.0's work queue, as a worker receives it."""
        [message] = await self.c.work.receive(wait_s=0)
        command = decode(message.body)
        assert isinstance(command, TransitionCommand)
        return message, command

    async def coordinator_takes(self, body: str | None = None) -> None:
        """Put ``body`` on the results queue (if given); the consumer handles all it holds."""
        if body is not None:
            await self.c.results_queue.send(Outgoing(body))
        for message in await self.c.results_queue.receive(wait_s=0):
            await self.c.results.handle(message)


async def delivered(queue: InMemoryQueue, body: str) -> Received:
    await queue.send(Outgoing(body))
    [message] = await queue.receive(wait_s=0)
    return message


async def settle(queue: InMemoryQueue, message: Received, settlement: Settlement) -> None:
    """What the poller does with a settlement."""
    if settlement.disposal == "delete":
        await queue.delete(message.receipt)
    elif settlement.disposal == "hand_back":
        await queue.change_visibility(message.receipt, 0)


def queue_time_passes(queue: InMemoryQueue, seconds: float) -> None:
    """Move the fake queue's clock on: delayed or invisible messages come due."""
    for stored in queue.messages.values():
        stored.visible_at -= seconds


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setenv("TPF_TEST_MARKERS", str(tmp_path))
    c = InMemoryCoordinator.create()
    await c.register(slow)
    return Rig(c=c, markers=tmp_path, t0=now_ms() - 20 * MINUTE)


# -- commands, on the worker ---------------------------------------------------------------------


def other_job(command: TransitionCommand) -> TransitionCommand:
    forged = Payload(payload_type_id=command.input.payload_type_id, payload='{"name":"forged"}')
    return command.model_copy(update={"input": forged})


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_command_without_a_valid_signature_is_rejected_counted_logged_and_never_run(
    rig: Rig, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    execution_id = await rig.submit()
    genuine_message, genuine = await rig.command()
    await rig.c.work.delete(genuine_message.receipt)
    assert genuine.signature is not None
    if forgery == "expired":  # the genuine command, received after its expiresAt
        command, at = genuine, genuine.signature.expires_at_epoch_ms + 1
    else:
        command, at = forge(genuine, forgery, channel="work", tamper=other_job), rig.t0 + SECOND
    before = sample("tpf_messages_rejected_total", role="worker", queue="work", reason="signature")
    message = await delivered(rig.c.work, command.to_json())

    with caplog.at_level(logging.WARNING, logger="tpf.worker"):
        settlement = await rig.worker(at=at).handle(message)

    assert settlement == Settlement("delete", rejected="signature")
    assert (
        sample("tpf_messages_rejected_total", role="worker", queue="work", reason="signature")
        == before + 1
    )
    assert any(getattr(r, "messageId", None) == message.message_id for r in caplog.records)
    assert rig.runs() == []
    assert rig.c.results_queue.messages == {}
    assert (await rig.record(execution_id)).version == genuine.execution_version


async def test_a_replayed_command_whose_result_was_committed_is_refused_as_superseded(
    rig: Rig,
) -> None:
    execution_id = await rig.submit()
    message, command = await rig.command()
    assert await rig.worker().handle(message) == Settlement("delete", outcome="COMPLETED")
    await rig.coordinator_takes()
    committed = await rig.record(execution_id)
    assert committed.status is Status.SUCCEEDED
    before = sample("tpf_messages_rejected_total", role="worker", queue="work", reason="superseded")

    replay = await delivered(rig.c.work, message.body)  # the very same signed bytes
    settlement = await rig.worker().handle(replay)

    assert settlement == Settlement("delete", rejected="superseded")
    assert (
        sample("tpf_messages_rejected_total", role="worker", queue="work", reason="superseded")
        == before + 1
    )
    assert rig.runs() == [command.transition_key]
    assert rig.c.results_queue.messages == {}
    assert await rig.record(execution_id) == committed


async def test_a_command_redelivered_while_its_transition_is_live_runs_again_under_its_key(
    rig: Rig,
) -> None:
    execution_id = await rig.submit()
    message, command = await rig.command()
    # The first worker runs the step but never gets its result out: the command stays.
    assert await rig.worker(results=RefusingQueue()).handle(message) == Settlement("keep")
    await rig.c.work.change_visibility(message.receipt, 0)  # its visibility timeout runs out

    [again] = await rig.c.work.receive(wait_s=0)
    assert (again.message_id, again.receive_count) == (message.message_id, 2)
    settlement = await rig.worker().handle(again)
    await settle(rig.c.work, again, settlement)
    await rig.coordinator_takes()

    assert settlement == Settlement("delete", outcome="COMPLETED")
    assert rig.runs() == [command.transition_key] * 2
    assert rig.c.work.messages == {}
    assert (await rig.record(execution_id)).status is Status.SUCCEEDED


async def test_a_retry_sent_with_the_longest_queue_delay_runs_when_it_arrives_900_s_later(
    rig: Rig,
) -> None:
    execution_id = await rig.submit()
    first_message, first = await rig.command()
    await rig.c.work.delete(first_message.receipt)
    failed_at = rig.t0 + SECOND
    unavailable = failed(first)
    assert unavailable.failure is not None
    wait = unavailable.failure.model_copy(update={"retry_after_ms": 900 * SECOND})
    await rig.c.committer.commit(unavailable.model_copy(update={"failure": wait}), now_ms=failed_at)
    scheduled = await rig.record(execution_id)
    assert scheduled.status is Status.WAIT_RETRY
    assert scheduled.transition_key == f"{execution_id}:0:2"
    # Sent at once, with SQS's longest delay: nothing can be received before 900 s have passed.
    assert (await rig.c.work.depth()).delayed == 1
    assert await rig.c.work.receive(wait_s=0) == []

    queue_time_passes(rig.c.work, 900)
    message, retry = await rig.command()
    settlement = await rig.worker(at=failed_at + 900 * SECOND).handle(message)
    await rig.coordinator_takes()

    assert retry.transition_key == scheduled.transition_key
    assert settlement == Settlement("delete", outcome="COMPLETED")
    assert rig.runs() == [scheduled.transition_key]
    done = await rig.record(execution_id)
    assert (done.status, done.version) == (Status.SUCCEEDED, scheduled.version + 1)


async def test_a_command_of_another_release_is_reported_and_sent_again_to_its_own_queue(
    rig: Rig,
) -> None:
    execution_id = await rig.submit()
    message, command = await rig.command()
    sent = sample("tpf_commands_rerouted_total", outcome="sent")

    settlement = await rig.worker(release="2.0.0").handle(message)
    await settle(rig.c.work, message, settlement)

    assert settlement == Settlement("delete", rejected="other_release")
    assert rig.runs() == []
    [report_message] = rig.c.results_queue.messages.values()
    replayed_report = report_message.body
    report = decode(report_message.body)
    assert isinstance(report, Misrouted)
    rig.c.signer.verify(report, channel="results", now_ms=now_ms())
    assert (report.transition_key, report.worker.release_version) == (
        command.transition_key,
        "2.0.0",
    )

    await rig.coordinator_takes()

    assert sample("tpf_commands_rerouted_total", outcome="sent") == sent + 1
    assert rig.c.results_queue.messages == {}
    assert rig.c.work is rig.c.work_queues.queue("1.0.0")  # the release's own queue
    rerouted_message, rerouted = await rig.command()
    assert (rerouted.transition_key, rerouted.execution_version) == (
        command.transition_key,
        command.execution_version,
    )
    # The same report again (redelivered or replayed) does not send another copy.
    duplicates = sample("tpf_commands_rerouted_total", outcome="duplicate")
    await rig.c.results_queue.send(Outgoing(replayed_report))
    await rig.coordinator_takes()
    assert sample("tpf_commands_rerouted_total", outcome="duplicate") == duplicates + 1
    assert len(rig.c.work.messages) == 1
    # The release's own worker runs it.
    assert (await rig.worker().handle(rerouted_message)).outcome == "COMPLETED"
    await rig.coordinator_takes()
    assert rig.runs() == [command.transition_key]
    assert (await rig.record(execution_id)).status is Status.SUCCEEDED


async def test_a_misroute_report_for_a_transition_that_moved_on_sends_nothing(rig: Rig) -> None:
    execution_id = await rig.submit()
    message, _ = await rig.command()
    outbox = InMemoryQueue("outbox")  # the report, still on its way to the coordinator
    misrouted = rig.worker(release="2.0.0", results=outbox)
    await settle(rig.c.work, message, await misrouted.handle(message))
    [report] = outbox.messages.values()
    # Meanwhile a duplicate delivery of the command reached a worker of its release and ran.
    duplicate = await delivered(rig.c.work, message.body)
    await settle(rig.c.work, duplicate, await rig.worker().handle(duplicate))
    await rig.coordinator_takes()
    moved_on = await rig.record(execution_id)
    assert moved_on.status is Status.SUCCEEDED
    stale = sample("tpf_commands_rerouted_total", outcome="stale")

    await rig.coordinator_takes(report.body)

    assert sample("tpf_commands_rerouted_total", outcome="stale") == stale + 1
    assert rig.c.work.messages == {}
    assert rig.c.results_queue.messages == {}
    assert await rig.record(execution_id) == moved_on


async def test_a_command_signed_with_the_previous_key_is_accepted_after_a_rotation(
    rig: Rig,
) -> None:
    await rig.submit()
    message, command = await rig.command()
    rotated = Signer(SigningKey(b"the new key"), previous=TEST_KEY)

    settlement = await rig.worker(signer=rotated).handle(message)

    assert settlement == Settlement("delete", outcome="COMPLETED")
    assert rig.runs() == [command.transition_key]


async def test_a_command_signed_with_a_retired_key_is_rejected_and_never_run(rig: Rig) -> None:
    await rig.submit()
    message, _ = await rig.command()
    retired = Signer(SigningKey(b"the newest key"), previous=SigningKey(b"the new key"))

    settlement = await rig.worker(signer=retired).handle(message)

    assert settlement == Settlement("delete", rejected="signature")
    assert rig.runs() == []
    assert rig.c.results_queue.messages == {}


# -- results and heartbeats, on the coordinator --------------------------------------------------


def forged_output(result: TransitionResult) -> TransitionResult:
    output = Payload(payload_type_id="forged", payload='{"name":"forged","by":"nobody"}')
    return result.model_copy(update={"output": output})


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_result_without_a_valid_signature_is_rejected_and_deleted_unapplied(
    rig: Rig, forgery: str
) -> None:
    execution_id = await rig.submit()
    message, _ = await rig.command()
    outbox = InMemoryQueue("outbox")  # the worker's result, held back to be forged
    await rig.worker(results=outbox).handle(message)
    [sent] = outbox.messages.values()
    genuine = decode(sent.body)
    assert isinstance(genuine, TransitionResult)
    forged = forge(genuine, forgery, channel="results", tamper=forged_output)
    running = await rig.record(execution_id)
    reason = "bad signature" if forgery == "tampered" else forgery
    before = sample(
        "tpf_messages_rejected_total", role="coordinator", queue="results", reason=reason
    )

    await rig.coordinator_takes(forged.to_json())

    assert (
        sample("tpf_messages_rejected_total", role="coordinator", queue="results", reason=reason)
        == before + 1
    )
    assert rig.c.results_queue.messages == {}
    assert await rig.record(execution_id) == running
    assert (running.status, running.version) == (Status.RUNNING, genuine.execution_version)


async def test_a_replayed_result_is_not_committed_twice(rig: Rig) -> None:
    execution_id = await rig.submit()
    message, _ = await rig.command()
    await rig.worker().handle(message)
    [sent] = rig.c.results_queue.messages.values()
    body = sent.body
    await rig.coordinator_takes()
    committed = await rig.record(execution_id)
    assert committed.status is Status.SUCCEEDED
    stale = sample("tpf_results_rejected_total", reason="stale")

    await rig.coordinator_takes(body)

    assert sample("tpf_results_rejected_total", reason="stale") == stale + 1
    assert rig.c.results_queue.messages == {}
    assert await rig.record(execution_id) == committed


def heartbeat(command: TransitionCommand) -> Heartbeat:
    """A worker's heartbeat for ``command``, signed now as the worker signs it."""
    beat = Heartbeat(
        tenant_id=command.tenant_id,
        execution_id=command.execution_id,
        transition_key=command.transition_key,
        execution_version=command.execution_version,
        worker=WorkerIdentity(worker_id="w-1.0.0", release_version="1.0.0"),
        sent_at_epoch_ms=now_ms(),
    )
    return Signer(TEST_KEY).sign(beat, channel="results", now_ms=now_ms(), ttl_ms=MINUTE)


def later(beat: Heartbeat) -> Heartbeat:
    return beat.model_copy(update={"sent_at_epoch_ms": beat.sent_at_epoch_ms + HOUR})


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_heartbeat_without_a_valid_signature_extends_nothing(
    rig: Rig, forgery: str
) -> None:
    execution_id = await rig.submit()
    _, command = await rig.command()
    forged = forge(heartbeat(command), forgery, channel="results", tamper=later)
    running = await rig.record(execution_id)
    reason = "bad signature" if forgery == "tampered" else forgery
    before = sample(
        "tpf_messages_rejected_total", role="coordinator", queue="results", reason=reason
    )

    await rig.coordinator_takes(forged.to_json())

    assert (
        sample("tpf_messages_rejected_total", role="coordinator", queue="results", reason=reason)
        == before + 1
    )
    assert rig.c.results_queue.messages == {}
    assert await rig.record(execution_id) == running


async def test_a_genuine_heartbeat_extends_the_deadline_without_changing_the_version(
    rig: Rig,
) -> None:
    execution_id = await rig.submit()
    _, command = await rig.command()
    running = await rig.record(execution_id)
    assert running.due_at_ms is not None and running.due_at_ms < now_ms()
    timeout_ms = int(rig.c.settings.timings.transition_timeout.total_seconds() * 1000)
    extended = sample("tpf_heartbeats_total", role="coordinator", outcome="extended")
    received_from = now_ms()

    await rig.coordinator_takes(heartbeat(command).to_json())

    renewed = await rig.record(execution_id)
    assert renewed.due_at_ms is not None and renewed.due_at_ms >= received_from + timeout_ms
    assert (renewed.status, renewed.version, renewed.transition_key) == (
        Status.RUNNING,
        running.version,
        command.transition_key,
    )
    assert sample("tpf_heartbeats_total", role="coordinator", outcome="extended") == extended + 1
    assert rig.c.results_queue.messages == {}


async def test_a_replayed_heartbeat_of_a_superseded_transition_extends_nothing(rig: Rig) -> None:
    execution_id = await rig.submit()
    _, command = await rig.command()
    beat = heartbeat(command).to_json()
    await rig.coordinator_takes(beat)  # delivered while live: it extends the deadline
    # The transition fails and its retry is scheduled under a new key: still in flight, so
    # only the transition key tells the replayed heartbeat from a live one.
    await rig.c.committer.commit(failed(command), now_ms=rig.t0 + SECOND)
    scheduled = await rig.record(execution_id)
    assert scheduled.status is Status.WAIT_RETRY
    assert scheduled.transition_key != command.transition_key
    stale = sample("tpf_heartbeats_total", role="coordinator", outcome="stale")

    await rig.coordinator_takes(beat)

    assert sample("tpf_heartbeats_total", role="coordinator", outcome="stale") == stale + 1
    assert rig.c.results_queue.messages == {}
    assert await rig.record(execution_id) == scheduled
