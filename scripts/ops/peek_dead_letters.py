"""Dead-letter envelopes: one per execution that ended FAILED or DLQ, left in place.

    scripts/peek-dead-letters [--limit 50] [--json]

Reads ``<stack>-dead-letters`` and its own DLQ ``<stack>-dead-letters-dlq``: every receive counts
toward the queue's maxReceiveCount, so an envelope peeked (or consumed and not deleted) too often
moves there. Messages are received hidden for a few seconds, so one pass sees each once, and made
visible again right after; nothing is deleted.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import client, load_settings

QUEUES = ("dead-letters", "dead-letters-dlq")
PEEK_VISIBILITY_S = 10
"""Long enough to read a queue; a receive with 0 would return the same messages again."""
COLUMNS = (
    "queue",
    "executionId",
    "tenantId",
    "pipelineId",
    "status",
    "errorCode",
    "errorMessage",
    "attempts",
    "failedAtEpochMs",
    "receiveCount",
)


def peek(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages of ``url``, received and then released at once."""
    received: dict[str, dict[str, Any]] = {}
    while len(received) < limit:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(received)),
            VisibilityTimeout=PEEK_VISIBILITY_S,
            WaitTimeSeconds=1,  # a short poll may miss messages on real SQS
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        ).get("Messages", [])
        if not batch:
            break
        received.update((m["MessageId"], m) for m in batch)
    for message in received.values():
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return list(received.values())


def _envelope(queue: str, message: dict[str, Any]) -> dict[str, Any]:
    try:
        envelope = json.loads(message["Body"])
    except ValueError:
        envelope = None
    attributes = message.get("Attributes", {})
    return {
        "queue": queue,
        "messageId": message["MessageId"],
        "receiveCount": int(attributes.get("ApproximateReceiveCount", 0)),
        "sentAtEpochMs": int(attributes.get("SentTimestamp", 0)) or None,
        "envelope": envelope if isinstance(envelope, dict) else None,
        "body": None if isinstance(envelope, dict) else message["Body"],
    }


def peek_dead_letters(
    limit: Annotated[int, typer.Option(min=1, help="Messages to read per queue.")] = 100,
    as_json: Json = False,
) -> None:
    """Print the dead-letter envelopes without removing them."""
    settings = load_settings()
    sqs = client(settings, "sqs")
    found = []
    for queue in QUEUES:
        url = sqs.get_queue_url(QueueName=settings.resource(queue))["QueueUrl"]
        found += [_envelope(queue, m) for m in peek(sqs, url, limit)]
    found.sort(key=_failed_at)
    if as_json:
        print_json(found)
        return
    print_table(f"{len(found)} dead letter(s)", [_row(m) for m in found], COLUMNS)


def _failed_at(message: dict[str, Any]) -> int:
    envelope = message["envelope"] or {}
    return int(envelope.get("failedAtEpochMs") or message["sentAtEpochMs"] or 0)


def _row(message: dict[str, Any]) -> dict[str, Any]:
    shown = message["envelope"] or {"errorMessage": f"not an envelope: {message['body'][:80]}"}
    return {c: shown.get(c, message.get(c)) for c in COLUMNS}


def main() -> None:
    run(peek_dead_letters)
