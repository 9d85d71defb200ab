"""``tpf dlq`` against each substrate: counting, peeking and replaying dead-letter queues.

The tests share the session's stack and purge the queues they touch before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from infra import _queues
from infra.resources import Queue, describe, work_queue
from tests.substrates import TestStack
from tests.waiting import wait_until
from tpf.errors import InvalidInput
from tpf.substrate import sync_client
from tpfctl.cli.dlq import _queue, counts, peek, replay

WORK = work_queue("org.example.orders", "1.0.0")

pytestmark = pytest.mark.substrate

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTES = {
    "traceId": {"DataType": "String", "StringValue": "trace-1"},
    "attempt": {"DataType": "Number", "StringValue": "3"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
}


@dataclass
class Queues:
    """A queue of the test's own and its DLQ, provisioned as the stack's queues are."""

    sqs: Any
    spec: Queue
    source: str
    dlq: str


@pytest.fixture
def queues(substrate_stack: TestStack) -> Iterator[Queues]:
    settings = substrate_stack.settings
    sqs = sync_client(settings, "sqs", endpoints=substrate_stack.endpoints)
    spec = Queue(f"dlqtest-{uuid.uuid4().hex[:8]}", timedelta(seconds=5))
    dlq = _queues.ensure(
        sqs, settings.resource(spec.dead_letter_name), _queues.dead_letter_attributes(spec)
    )
    source = _queues.ensure(sqs, settings.resource(spec.name), _queues.attributes(spec, dlq.arn))
    yield Queues(sqs, spec, source.url, dlq.url)
    for name in (spec.name, spec.dead_letter_name):
        _queues.delete(sqs, settings.resource(name))


def _send(sqs: Any, url: str, bodies: list[str]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=ATTRIBUTES)


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of ``url``, received and deleted."""
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    ).get("Messages", []):
        found += batch
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def _dlq_count(stack: TestStack, queues: Queues) -> tuple[int, int]:
    row = counts(queues.sqs, stack.settings, [queues.spec])[0]
    return row["visible"], row["inFlight"]


def test_counts_cover_every_stack_queue_and_report_a_missing_dlq(
    substrate_stack: TestStack, queues: Queues
) -> None:
    _send(queues.sqs, queues.dlq, ["a", "b", "c"])
    settings = substrate_stack.settings
    stack_queues = describe(settings).queues
    missing = Queue("no-such-queue", timedelta(seconds=5))

    rows = counts(queues.sqs, settings, [*stack_queues, queues.spec, missing])

    for row, queue in zip(rows, stack_queues, strict=False):
        assert row["queue"] == queue.name
        assert row["dlq"] == settings.resource(f"{queue.name}-dlq")
        assert row["exists"] and row["visible"] >= 0 and row["inFlight"] >= 0
    assert rows[-2]["queue"] == queues.spec.name
    assert (rows[-2]["visible"], rows[-2]["inFlight"]) == (3, 0)
    assert rows[-1] == {
        "queue": "no-such-queue",
        "dlq": settings.resource("no-such-queue-dlq"),
        "exists": False,
        "visible": None,
        "inFlight": None,
    }


def test_a_message_received_too_often_lands_in_the_dlq_and_is_counted(
    substrate_stack: TestStack, queues: Queues
) -> None:
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody="poison")

    def dead_lettered() -> bool:
        # Visibility 0 makes the message receivable again at once; past the limit SQS moves it.
        queues.sqs.receive_message(QueueUrl=queues.source, VisibilityTimeout=0)
        return _dlq_count(substrate_stack, queues)[0] == 1

    wait_until(dead_lettered, timeout=20)
    [message] = peek(queues.sqs, queues.dlq, 10)
    assert message["summary"] == "poison"
    assert message["receiveCount"] >= 1


def test_peek_summarizes_envelopes_and_leaves_every_message_in_place(
    substrate_stack: TestStack, queues: Queues
) -> None:
    command = {"kind": "command", "executionId": "e-1", "transitionKey": "e-1:0:1", "x": 1}
    plain = "not json " + "x" * 200
    _send(queues.sqs, queues.dlq, [json.dumps(command), plain, "[1, 2]"])

    found = {m["messageId"]: m for m in peek(queues.sqs, queues.dlq, 10)}

    assert len(found) == 3
    summaries = sorted(m["summary"] for m in found.values())
    assert summaries == sorted(["command e-1 e-1:0:1", plain[:80], "[1, 2]"])
    [shown] = [m for m in found.values() if m.get("kind") == "command"]
    assert (shown["executionId"], shown["transitionKey"]) == ("e-1", "e-1:0:1")
    assert shown["receiveCount"] == 1 and shown["sentAt"].startswith("20")
    # Released at once: all three are visible again, none in flight.
    wait_until(lambda: _dlq_count(substrate_stack, queues) == (3, 0))
    assert len(peek(queues.sqs, queues.dlq, 2)) == 2  # the limit holds


def test_peek_summarizes_dead_letter_envelopes(queues: Queues) -> None:
    # What `tpf dlq list dead-letters --source` shows: the terminal-failure envelopes.
    envelope = {"kind": "dead-letter", "executionId": "e-9", "status": "DLQ", "errorCode": "E"}
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody=json.dumps(envelope))

    [message] = peek(queues.sqs, queues.source, 5)

    assert message["summary"] == "dead-letter e-9 DLQ E"
    assert (message["executionId"], message["status"]) == ("e-9", "DLQ")


def test_replay_moves_bodies_and_attributes_back_and_empties_the_dlq(
    substrate_stack: TestStack, queues: Queues
) -> None:
    bodies = [f"message {i}" for i in range(23)]  # three receive batches
    _send(queues.sqs, queues.dlq, bodies)

    report = replay(queues.sqs, queues.source, queues.dlq)

    assert (report.moved, report.failed, report.failures) == (23, 0, [])
    assert report.queue == substrate_stack.settings.resource(queues.spec.name)
    moved = _drain(queues.sqs, queues.source)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    for m in moved:
        attributes = {
            k: {a: v[a] for a in ("DataType", "StringValue", "BinaryValue") if a in v}
            for k, v in m["MessageAttributes"].items()
        }
        assert attributes == ATTRIBUTES
    assert _dlq_count(substrate_stack, queues) == (0, 0)


def test_replay_stops_at_its_limit(substrate_stack: TestStack, queues: Queues) -> None:
    _send(queues.sqs, queues.dlq, [f"m{i}" for i in range(12)])

    report = replay(queues.sqs, queues.source, queues.dlq, limit=5)

    assert report.moved == 5
    assert len(_drain(queues.sqs, queues.source)) == 5
    assert _dlq_count(substrate_stack, queues) == (7, 0)


def test_replay_keeps_a_message_whose_send_failed_in_the_dlq(
    substrate_stack: TestStack, queues: Queues
) -> None:
    _send(queues.sqs, queues.dlq, ["ok"])
    missing = f"{queues.source}-missing"

    report = replay(queues.sqs, missing, queues.dlq)

    assert (report.moved, report.failed) == (0, 1)
    assert len(report.failures) == 1
    visible, in_flight = _dlq_count(substrate_stack, queues)
    assert visible + in_flight == 1  # still there, hidden until its visibility timeout


def test_unknown_queue_names_the_valid_ones(substrate_stack: TestStack) -> None:
    with pytest.raises(InvalidInput, match=r"unknown queue 'wrok': expected one of results, "):
        sqs = sync_client(substrate_stack.settings, "sqs", endpoints=substrate_stack.endpoints)
        _queue(substrate_stack.settings, sqs, "wrok")


# -- the command, as an operator runs it ------------------------------------------------------


def _tpf(stack: TestStack, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "TPF_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        TPF_STATE_DIR=str(tmp_path / "state"),
        TPF_STACK=stack.settings.stack,
        TPF_SUBSTRATE=stack.substrate,
        AWS_ENDPOINT_URL_SQS=str(stack.endpoints.sqs),
        AWS_ENDPOINT_URL_DYNAMODB=str(stack.endpoints.dynamodb),
        AWS_ENDPOINT_URL_S3=str(stack.endpoints.s3),
        COLUMNS="400",
    )
    return subprocess.run(
        [sys.executable, "-m", "tpfctl", "dlq", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_lists_peeks_dry_runs_and_replays(
    embedded_stack: TestStack, tmp_path: Path
) -> None:
    settings = embedded_stack.settings
    sqs = sync_client(settings, "sqs", endpoints=embedded_stack.endpoints)
    work, dlq, dead_letters = (
        sqs.get_queue_url(QueueName=settings.resource(name))["QueueUrl"]
        for name in (WORK, f"{WORK}-dlq", "dead-letters")
    )
    for url in (work, dlq, dead_letters):
        _drain(sqs, url)
    _send(sqs, dlq, ["one", "two"])

    listed = _tpf(embedded_stack, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["queue"]: r for r in json.loads(listed.stdout)}
    releases = [("org.example.orders", "1.0.0")]
    assert set(rows) == {q.name for q in describe(settings, releases=releases).queues}
    assert rows[WORK]["visible"] == 2

    peeked = _tpf(embedded_stack, tmp_path, "list", WORK, "--messages", "--json")
    assert peeked.returncode == 0, peeked.stderr
    assert sorted(m["summary"] for m in json.loads(peeked.stdout)) == ["one", "two"]

    dry = _tpf(embedded_stack, tmp_path, "replay", WORK, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = {"queue": WORK, "moved": 2, "failed": 0, "dryRun": True, "failures": []}
    assert json.loads(dry.stdout) == report
    assert _drain(sqs, work) == []

    moved = _tpf(embedded_stack, tmp_path, "replay", WORK)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == f"{WORK}: moved 2 from {settings.resource(WORK + '-dlq')}"
    assert sorted(m["Body"] for m in _drain(sqs, work)) == ["one", "two"]

    sqs.send_message(QueueUrl=dead_letters, MessageBody='{"kind": "dead-letter"}')
    source = _tpf(embedded_stack, tmp_path, "list", "dead-letters", "--source", "--json")
    assert source.returncode == 0, source.stderr
    assert [m["summary"] for m in json.loads(source.stdout)] == ["dead-letter"]
    assert len(_drain(sqs, dead_letters)) == 1  # peeking left it there


def test_the_cli_rejects_an_unknown_queue_in_one_line(
    embedded_stack: TestStack, tmp_path: Path
) -> None:
    result = _tpf(embedded_stack, tmp_path, "replay", "wrok")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown queue 'wrok': expected one of results, ingest, await-requests, "
        f"await-completions, dead-letters, {WORK}"
    ]
