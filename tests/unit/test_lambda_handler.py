"""The Lambda handler over in-memory fakes: settlements become Lambda's partial batch response."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import ValidationError
from pydantic import BaseModel

from examples.orders import orders
from tests.unit.commands import first_command
from tests.unit.drive import checkpointed
from tests.workers import ORDER, command_handler
from tpf.errors import ConfigurationError
from tpf.pipeline import Pipeline
from tpf.queues import InMemoryQueue, Outgoing
from tpf.signing import Signer, SigningKey
from tpf.wire import (
    Heartbeat,
    Misrouted,
    TransitionCommand,
    TransitionResult,
    WorkerIdentity,
    decode,
)
from worker import lambda_handler
from worker.command import epoch_ms
from worker.lambda_handler import Container, configured_pipelines, handler

IDENTITY = WorkerIdentity(worker_id="lambda-1", release_version="1.0.0")
SIGNER = Signer(SigningKey(b"unit-test-key"))
QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:tpf-work"


@dataclass(frozen=True)
class FakeContext:
    function_name: str = "tpf-worker"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:tpf-worker"
    aws_request_id: str = "request-1"


class Job(BaseModel):
    name: str


def beating(results: InMemoryQueue) -> Pipeline:
    """A step that finishes only once a heartbeat for it reached the results queue."""
    p = Pipeline("org.example.beating", input=Job)

    @p.step()
    async def wait_for_a_heartbeat(job: Job) -> Job:
        deadline = time.monotonic() + 2
        while not any('"heartbeat"' in m.body for m in results.messages.values()):
            assert time.monotonic() < deadline, "no heartbeat within 2 s"
            await asyncio.sleep(0.01)
        return job

    return p


class RefusingQueue(InMemoryQueue):
    """A results queue that cannot be reached."""

    async def send(self, message: Outgoing) -> None:
        raise ConnectionError("results queue unreachable")


class Lambda:
    """A container over fakes, installed as the handler's own."""

    def __init__(self, *pipelines: Pipeline, results: InMemoryQueue | None = None) -> None:
        self.results = results or InMemoryQueue("results")
        self.commands = command_handler(
            *pipelines,
            signer=SIGNER,
            identity=IDENTITY,
            results=self.results,
            log=logging.getLogger("tpf-worker.commands"),
        )
        self.container = Container(asyncio.new_event_loop(), self.commands)

    def envelopes(self) -> list[TransitionResult | Heartbeat | Misrouted]:
        found = []
        for stored in self.results.messages.values():
            envelope = decode(stored.body)
            assert isinstance(envelope, TransitionResult | Heartbeat | Misrouted)
            SIGNER.verify(envelope, channel="results", now_ms=epoch_ms())
            found.append(envelope)
        return found


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    installed: list[Lambda] = []

    def start(*pipelines: Pipeline, results: InMemoryQueue | None = None) -> Lambda:
        fake = Lambda(*pipelines, results=results)
        monkeypatch.setattr(lambda_handler, "_container", fake.container)
        installed.append(fake)
        return fake

    yield start
    for fake in installed:
        fake.container.close()


command = first_command


def signed(envelope: TransitionCommand) -> str:
    return SIGNER.sign(envelope, channel="work", now_ms=epoch_ms(), ttl_ms=60_000).to_json()


def record(body: str) -> dict[str, Any]:
    """One record as Lambda's SQS event source mapping delivers it."""
    now = str(epoch_ms())
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": f"receipt-{uuid.uuid4().hex}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": now,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def invoke(*records: dict[str, Any]) -> list[str]:
    """The message ids the handler reports as failed."""
    response = handler({"Records": list(records)}, FakeContext())
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def emitted_metrics(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_a_signed_command_runs_and_nothing_is_reported_failed(install: Any) -> None:
    fake = install(orders)
    assert invoke(record(signed(command(orders, ORDER)))) == []
    [result] = fake.envelopes()  # envelopes() verifies each signature on the results channel
    assert isinstance(result, TransitionResult)
    assert (result.outcome, result.transition_key, result.worker) == (
        "COMPLETED",
        "e-1:0:1",
        IDENTITY,
    )


def test_only_the_records_that_must_come_back_are_reported(install: Any) -> None:
    fake = install(orders)
    good = record(signed(command(orders, ORDER, execution="e-good")))
    tampered_command = json.loads(signed(command(orders, ORDER, execution="e-tampered")))
    tampered_command["attempt"] = 7
    tampered = record(json.dumps(tampered_command))
    late = record(
        signed(
            command(orders, ORDER, execution="e-late").model_copy(
                update={"deadline_epoch_ms": epoch_ms() - 1}
            )
        )
    )
    malformed = record('{"kind": "command", "tenantId": 42}')
    elsewhere = record(
        signed(command(orders, ORDER, "e-other").model_copy(update={"release_version": "2.0.0"}))
    )

    failed = invoke(good, tampered, late, malformed, elsewhere)

    # Bad signature and past deadline: deleted, never retried. Malformed: back to the queue,
    # whose redrive policy retires it to the DLQ. Another release's command: deleted once a
    # signed misroute report is on its way to the coordinator, which re-routes it.
    assert failed == [malformed["messageId"]]
    envelopes = fake.envelopes()
    assert [e.execution_id for e in envelopes] == ["e-good", "e-other"]
    assert isinstance(envelopes[1], Misrouted)
    assert envelopes[1].release_version == "2.0.0"


def test_a_result_that_cannot_be_sent_is_reported_for_redelivery(install: Any) -> None:
    install(orders, results=RefusingQueue("results"))
    unsent = record(signed(command(orders, ORDER)))
    assert invoke(unsent) == [unsent["messageId"]]


def test_a_command_close_to_its_deadline_heartbeats_on_the_results_channel(
    install: Any,
) -> None:
    results = InMemoryQueue("results")
    pipeline = beating(results)
    fake = install(pipeline, results=results)
    close = command(pipeline, {"name": "close"}).model_copy(
        update={"deadline_epoch_ms": epoch_ms() + 1_000}  # under one transition timeout left
    )
    assert invoke(record(signed(close))) == []
    kinds = [type(e).__name__ for e in fake.envelopes()]
    assert kinds == ["Heartbeat", "TransitionResult"]


def test_rejections_and_executed_transitions_are_emitted_as_embedded_metrics(
    install: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    install(orders)
    capsys.readouterr()
    invoke(record(signed(command(orders, ORDER))), record(signed(command(orders, ORDER))[:-9]))
    emitted = emitted_metrics(capsys.readouterr().out)
    rejection = next(m for m in emitted if "CommandsRejected" in m)
    assert (rejection["reason"], rejection["service"]) == ("malformed", "tpf-worker")
    assert rejection["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TPF"
    [invocation] = [m for m in emitted if "TransitionsExecuted" in m]
    counts = ("CommandsReceived", "TransitionsExecuted", "CommandsRedelivered")
    assert [invocation[name] for name in counts] == [[2.0], [1.0], [1.0]]


def test_log_records_carry_the_execution_the_transition_and_the_action(
    install: Any, caplog: pytest.LogCaptureFixture
) -> None:
    install(orders)
    with caplog.at_level(logging.INFO, logger="tpf-worker"):
        invoke(record(signed(command(orders, ORDER, execution="e-logged"))))
    [sent] = [r for r in caplog.records if getattr(r, "action", None) == "result-sent"]
    line = json.loads(lambda_handler.logger.registered_formatter.format(sent))
    assert (line["executionId"], line["transitionKey"], line["action"]) == (
        "e-logged",
        "e-logged:0:1",
        "result-sent",
    )
    assert (line["service"], line["function_request_id"]) == ("tpf-worker", "request-1")


def test_an_event_from_another_source_fails_the_whole_invocation_and_is_counted(
    install: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = install(orders)
    not_sqs = record(signed(command(orders, ORDER))) | {"eventSource": "aws:kinesis"}
    capsys.readouterr()
    with pytest.raises(ValidationError):
        handler({"Records": [not_sqs]}, FakeContext())
    assert fake.results.messages == {}
    assert any("InvalidEvents" in m for m in emitted_metrics(capsys.readouterr().out))


def test_the_pipelines_to_host_come_from_tpf_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPF_PIPELINES", "examples.orders:orders, tests.unit.drive:checkpointed")
    assert [p.id for p in configured_pipelines()] == [orders.id, checkpointed.id]
    monkeypatch.setenv("TPF_PIPELINES", "")
    with pytest.raises(ConfigurationError):
        configured_pipelines()
