"""S3 uploads to the inbox reach the ingest consumer through the bucket's real notification.

The stack is shared by the session, so the ingest queue may hold messages of earlier tests (and
the ``s3:TestEvent`` of provisioning): the consumer drains them all, and each test looks only at
the keys under its own prefix.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from coordinator.ingest import IngestConsumer, MalformedNotification, UploadedObject
from coordinator.ingest import parse_notification as parse
from infra.resources import describe
from tests.substrates import TestStack
from tests.waiting import wait_until
from tpf.queues import Outgoing, Queue, Received, SqsQueue
from tpf.substrate import open_clients, sync_client

TIMEOUT_S = 30.0


@pytest.fixture(params=["embedded", "localstack"])
def stack(request: pytest.FixtureRequest) -> TestStack:
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    return stack


class RecordingQueue:
    """The real queue, remembering what the consumer received and deleted."""

    def __init__(self, queue: Queue) -> None:
        self.queue, self.name = queue, queue.name
        self.received: list[Received] = []
        self.deleted: set[str] = set()

    async def send(self, message: Outgoing) -> None:
        await self.queue.send(message)

    async def send_many(self, messages: Sequence[Outgoing]) -> None:
        await self.queue.send_many(messages)

    async def receive(self, *, max_messages: int = 10, wait_s: int = 20) -> list[Received]:
        messages = await self.queue.receive(max_messages=max_messages, wait_s=wait_s)
        self.received.extend(messages)
        return messages

    async def delete(self, receipt: str) -> None:
        await self.queue.delete(receipt)
        self.deleted.add(receipt)

    async def change_visibility(self, receipt: str, seconds: int) -> None:
        await self.queue.change_visibility(receipt, seconds)

    def handled(self, predicate: Any) -> list[Received]:
        """Received messages whose body satisfies ``predicate`` and that were deleted."""
        return [m for m in self.received if predicate(m.body) and m.receipt in self.deleted]


def keys_in(body: str) -> set[str]:
    try:
        return {o.key for o in parse(body)}
    except MalformedNotification:
        return set()


@asynccontextmanager
async def consuming(stack: TestStack) -> AsyncIterator[tuple[RecordingQueue, list[UploadedObject]]]:
    """An ingest consumer on the real queue with a recording submit, until the block ends."""
    submitted: list[UploadedObject] = []

    async def submit(obj: UploadedObject) -> None:
        submitted.append(obj)

    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        queue = RecordingQueue(await SqsQueue.open(aws.sqs, stack.settings.resource("ingest")))
        consumer = IngestConsumer(queue=queue, submit=submit, timings=stack.settings.timings)
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            yield queue, submitted
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=TIMEOUT_S)


def queue_is_empty(stack: TestStack, name: str) -> bool:
    sqs = sync_client(stack.settings, "sqs", endpoints=stack.endpoints)
    url = sqs.get_queue_url(QueueName=stack.settings.resource(name))["QueueUrl"]
    counts = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in counts.values())


async def test_uploads_become_one_submission_per_uploaded_content(stack: TestStack) -> None:
    s3 = sync_client(stack.settings, "s3", endpoints=stack.endpoints)
    bucket = stack.settings.resource("inbox")
    # The "/" matters: moto's server URL-encodes it in notifications, S3 and LocalStack don't.
    prefix = f"ingest-{uuid.uuid4().hex[:8]}/"
    unicode_key = f"{prefix}my file é (1)+ü.csv"
    same = f"{prefix}same content.csv"
    changed = f"{prefix}changed.csv"
    text = f"{prefix}notes.txt"
    synthetic = f"{prefix}synthetic.txt"

    def put(key: str, body: bytes) -> str:
        etag: str = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        return etag.strip('"')

    async with consuming(stack) as (queue, submitted):
        # Sync boto3 off the event loop, so the consumer keeps polling meanwhile.
        etags = {
            (key, body): await asyncio.to_thread(put, key, body)
            for key, body in [
                (text, b"not,a,csv\n"),
                (unicode_key, b"a,b\n1,2\n"),
                (same, b"x,y\n"),
                (same, b"x,y\n"),
                (changed, b"v\n1\n"),
                (changed, b"v\n2\n"),
            ]
        }
        # The bucket's filter keeps .txt away from the queue; this checks the consumer's own.
        await queue.send(
            Outgoing(
                json.dumps(
                    {
                        "Records": [
                            {
                                "eventName": "ObjectCreated:Put",
                                "eventTime": "2026-01-01T00:00:00.000Z",
                                "s3": {
                                    "bucket": {"name": bucket},
                                    "object": {"key": synthetic, "size": 1, "eTag": "abc"},
                                },
                            }
                        ]
                    }
                )
            )
        )

        def ours() -> list[UploadedObject]:
            return [o for o in submitted if o.key.startswith(prefix)]

        def done() -> bool:
            synthetic_done = queue.handled(lambda body: synthetic in keys_in(body))
            return len(ours()) >= 5 and bool(synthetic_done)

        await asyncio.to_thread(wait_until, done, timeout=TIMEOUT_S)

    mine = ours()
    assert Counter(o.key for o in mine) == {unicode_key: 1, same: 2, changed: 2}
    assert {o.bucket for o in mine} == {bucket}
    # The inbox keeps versions. LocalStack's notices name them, moto's do not; either way an
    # identical re-upload (same ETag, another version) is one submission key, below.
    if stack.substrate == "localstack":
        assert all(o.version_id for o in mine)
    by_key = {k: [o for o in mine if o.key == k] for k in (unicode_key, same, changed)}

    (upload,) = by_key[unicode_key]
    assert upload.etag == etags[(unicode_key, b"a,b\n1,2\n")]
    assert upload.size == len(b"a,b\n1,2\n")

    first, second = by_key[same]
    assert first.etag == second.etag == etags[(same, b"x,y\n")]
    assert first.idempotency_key == second.idempotency_key

    one, other = by_key[changed]
    assert {one.etag, other.etag} == {etags[(changed, b"v\n1\n")], etags[(changed, b"v\n2\n")]}
    assert one.idempotency_key != other.idempotency_key
    assert len({o.idempotency_key for o in mine}) == 4

    # Neither layer let a .txt through: no notification for it arrived, the synthetic one was
    # received, ignored and deleted.
    assert not any(text in keys_in(m.body) for m in queue.received)
    assert not any(o.key in (text, synthetic) for o in submitted)
    # Every message the consumer received was settled; nothing is left in the queue.
    await asyncio.to_thread(wait_until, lambda: queue_is_empty(stack, "ingest"), timeout=TIMEOUT_S)


async def test_a_malformed_message_ends_in_the_dead_letter_queue(stack: TestStack) -> None:
    body = f"not a notification {uuid.uuid4().hex}"
    sqs = sync_client(stack.settings, "sqs", endpoints=stack.endpoints)
    dlq = sqs.get_queue_url(QueueName=stack.settings.resource("ingest-dlq"))["QueueUrl"]

    def dead_lettered() -> bool:
        response = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in response.get("Messages", []):
            if message["Body"] == body:
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
                return True
        return False

    async with consuming(stack) as (queue, _):
        began = time.monotonic()
        await queue.send(Outgoing(body))
        await asyncio.to_thread(wait_until, dead_lettered, timeout=TIMEOUT_S)
        took = time.monotonic() - began

    receives = [m for m in queue.received if m.body == body]
    ingest = describe(stack.settings).queue("ingest")
    # Never deleted; released at once on every receive, so the redrive policy moved it after
    # maxReceiveCount deliveries in far less than that many visibility timeouts. (Counted as
    # seen by this consumer: under load the emulator may hand one delivery elsewhere.)
    assert 1 <= len(receives) <= ingest.max_receive_count
    assert not any(m.receipt in queue.deleted for m in receives)
    assert (
        took
        < ingest.max_receive_count * stack.settings.timings.visibility_timeout.total_seconds() / 2
    )
    await asyncio.to_thread(wait_until, lambda: queue_is_empty(stack, "ingest"), timeout=TIMEOUT_S)
