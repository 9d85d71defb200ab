from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from coordinator.ingest import (
    IngestConsumer,
    MalformedNotification,
    UploadedObject,
    parse_notification,
)
from tests.waiting import eventually
from tpf.queues import InMemoryQueue, Outgoing, Received
from tpf.settings import PROFILES

TIMINGS = PROFILES["test"]


def record(
    key: str,
    *,
    event: str = "ObjectCreated:Put",
    bucket: str = "inbox",
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e",
    version_id: str | None = None,
    size: int = 4,
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "size": size}
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-02T03:04:05.678Z",
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "to-ingest",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def notification(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


TEST_EVENT = json.dumps(
    {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-02T03:04:05Z", "Bucket": "b"}
)


class Recorder:
    def __init__(self, *, fail_keys: frozenset[str] = frozenset()) -> None:
        self.objects: list[UploadedObject] = []
        self.fail_keys = fail_keys

    async def __call__(self, obj: UploadedObject) -> None:
        if obj.key in self.fail_keys:
            raise RuntimeError("submit throttled")
        self.objects.append(obj)


def consumer(queue: InMemoryQueue, submit: Recorder) -> IngestConsumer:
    return IngestConsumer(queue=queue, submit=submit, timings=TIMINGS)


async def deliver(queue: InMemoryQueue, body: str) -> Received:
    await queue.send(Outgoing(body))
    (message,) = await queue.receive(wait_s=0)
    return message


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- parsing -------------------------------------------------------------------------------------


def test_test_event_has_no_objects() -> None:
    assert parse_notification(TEST_EVENT) == []


def test_keys_are_decoded() -> None:
    (obj,) = parse_notification(notification(record("my+file%C3%A9+%281%29.csv")))
    assert obj.key == "my fileé (1).csv"
    # moto encodes "/" and LocalStack encodes spaces as %20; a literal "+" arrives as %2B.
    (obj,) = parse_notification(notification(record("in%2Fa%20b%2Bc.csv")))
    assert obj.key == "in/a b+c.csv"


def test_fields_of_an_object() -> None:
    (obj,) = parse_notification(
        notification(record("a.csv", etag='"abc"', version_id="v1", size=12))
    )
    assert obj == UploadedObject(
        bucket="inbox",
        key="a.csv",
        version_id="v1",
        etag="abc",
        size=12,
        event_time="2026-01-02T03:04:05.678Z",
    )


def test_other_events_are_left_out() -> None:
    body = notification(
        record("gone.csv", event="ObjectRemoved:Delete", etag=None),
        record("new.csv", event="ObjectCreated:CompleteMultipartUpload"),
    )
    assert [o.key for o in parse_notification(body)] == ["new.csv"]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "",
        "[1, 2]",
        '"Records"',
        json.dumps({"Service": "Amazon S3", "Event": "s3:Other"}),
        json.dumps({"Records": "nope"}),
        json.dumps({"Records": [1]}),
        json.dumps({"Records": [{"s3": {}}]}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]}),
        notification(record("")),
        notification(record("a.csv", bucket="")),
    ],
)
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(MalformedNotification):
        parse_notification(body)


# -- idempotency keys ----------------------------------------------------------------------------


def obj(**changes: Any) -> UploadedObject:
    values: dict[str, Any] = {
        "bucket": "inbox",
        "key": "a.csv",
        "version_id": None,
        "etag": "e1",
        "size": 1,
        "event_time": "t1",
    }
    values.update(changes)
    return UploadedObject(**values)


def test_uploads_are_keyed_by_etag() -> None:
    key = obj().idempotency_key
    assert key.startswith("s3:") and len(key) <= 128
    # An identical re-upload: same content, another event.
    assert obj(event_time="t2", size=1).idempotency_key == key
    assert obj(etag="e2").idempotency_key != key
    assert obj(key="b.csv").idempotency_key != key
    assert obj(bucket="other").idempotency_key != key
    # Versioning never enabled or suspended: "null" is overwritten in place, so the ETag decides.
    assert obj(version_id="null").idempotency_key == key


def test_an_identical_re_upload_to_a_versioned_bucket_is_the_same_execution() -> None:
    v1 = obj(version_id="v1").idempotency_key
    assert obj(version_id="v2").idempotency_key == v1  # same ETag: same bytes
    assert obj(version_id="v2", etag="e2").idempotency_key != v1
    # Only without an ETag does the version decide.
    assert (
        obj(version_id="v1", etag=None).idempotency_key
        != obj(version_id="v2", etag=None).idempotency_key
    )


def test_duplicate_notifications_have_the_same_key() -> None:
    body = notification(record("my+file%C3%A9+%281%29.csv"))
    (first,) = parse_notification(body)
    (second,) = parse_notification(body)
    assert first.idempotency_key == second.idempotency_key


# -- the consumer --------------------------------------------------------------------------------


async def test_test_event_is_deleted_without_submitting() -> None:
    queue, submit = InMemoryQueue(), Recorder()
    await consumer(queue, submit).handle(await deliver(queue, TEST_EVENT))
    assert submit.objects == []
    assert queue.messages == {}


async def test_an_upload_is_submitted_then_deleted(caplog: pytest.LogCaptureFixture) -> None:
    queue, submit = InMemoryQueue(), Recorder()
    submitted = sample("tpf_ingested_objects_total", outcome="submitted")
    with caplog.at_level(logging.INFO, logger="tpf.coordinator"):
        await consumer(queue, submit).handle(
            await deliver(queue, notification(record("my+file%C3%A9+%281%29.csv")))
        )
    assert [o.key for o in submit.objects] == ["my fileé (1).csv"]
    assert queue.messages == {}
    assert sample("tpf_ingested_objects_total", outcome="submitted") == submitted + 1
    (line,) = [r for r in caplog.records if getattr(r, "action", None) == "ingest"]
    assert line.levelno == logging.INFO
    assert (vars(line)["bucket"], vars(line)["key"]) == ("inbox", "my fileé (1).csv")


async def test_duplicate_notifications_submit_the_same_key() -> None:
    queue, submit = InMemoryQueue(), Recorder()
    body = notification(record("a.csv"))
    c = consumer(queue, submit)
    await c.handle(await deliver(queue, body))
    await c.handle(await deliver(queue, body))
    assert len(submit.objects) == 2
    assert submit.objects[0].idempotency_key == submit.objects[1].idempotency_key
    assert queue.messages == {}


async def test_other_suffixes_and_events_are_ignored_and_deleted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, submit = InMemoryQueue(), Recorder()
    ignored = sample("tpf_ingested_objects_total", outcome="ignored")
    body = notification(
        record("notes.txt"),
        record("data.csv.bak"),
        record("gone.csv", event="ObjectRemoved:Delete", etag=None),
    )
    with caplog.at_level(logging.INFO, logger="tpf.coordinator"):
        await consumer(queue, submit).handle(await deliver(queue, body))
    assert submit.objects == []
    assert queue.messages == {}
    assert sample("tpf_ingested_objects_total", outcome="ignored") == ignored + 3
    skipped = [r for r in caplog.records if getattr(r, "action", None) == "ingest-ignored"]
    assert {r.levelno for r in skipped} == {logging.INFO}
    assert {vars(r).get("key") for r in skipped} >= {"notes.txt", "data.csv.bak"}


async def test_a_custom_suffix() -> None:
    queue, submit = InMemoryQueue(), Recorder()
    c = IngestConsumer(queue=queue, submit=submit, timings=TIMINGS, suffix=".json")
    await c.handle(await deliver(queue, notification(record("a.csv"), record("a.json"))))
    assert [o.key for o in submit.objects] == ["a.json"]


async def test_a_failed_submit_leaves_the_message(caplog: pytest.LogCaptureFixture) -> None:
    queue, submit = InMemoryQueue(), Recorder(fail_keys=frozenset({"b.csv"}))
    failed = sample("tpf_ingested_objects_total", outcome="failed")
    message = await deliver(queue, notification(record("a.csv"), record("b.csv")))
    visible_at = queue.messages[message.message_id].visible_at
    with caplog.at_level(logging.INFO, logger="tpf.coordinator"):
        await consumer(queue, submit).handle(message)
    # Not deleted, and not released early: SQS redelivers it after the visibility timeout.
    assert queue.messages[message.message_id].visible_at == visible_at
    assert await queue.receive(wait_s=0) == []
    assert [o.key for o in submit.objects] == ["a.csv"]
    assert sample("tpf_ingested_objects_total", outcome="failed") == failed + 1
    (line,) = [r for r in caplog.records if getattr(r, "action", None) == "ingest-failed"]
    assert vars(line)["key"] == "b.csv"

    # Redelivered once the submit works: both submitted again (idempotent), then deleted.
    submit.fail_keys = frozenset()
    queue.messages[message.message_id].visible_at = 0.0
    (again,) = await queue.receive(wait_s=0)
    assert again.receive_count == 2
    await consumer(queue, submit).handle(again)
    assert [o.key for o in submit.objects] == ["a.csv", "a.csv", "b.csv"]
    assert queue.messages == {}


@pytest.mark.parametrize("body", ["not json", json.dumps({"Records": [{"eventName": 1}]})])
async def test_a_malformed_message_is_released_and_counted(
    body: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue, submit = InMemoryQueue(), Recorder()
    rejected = sample(
        "tpf_messages_rejected_total", role="coordinator", queue="ingest", reason="malformed"
    )
    message = await deliver(queue, body)
    with caplog.at_level(logging.INFO, logger="tpf.coordinator"):
        await consumer(queue, submit).handle(message)
    # Visible again at once, so the redrive policy moves it to the DLQ after maxReceiveCount.
    (again,) = await queue.receive(wait_s=0)
    assert (again.message_id, again.receive_count) == (message.message_id, 2)
    assert submit.objects == []
    assert sample(
        "tpf_messages_rejected_total", role="coordinator", queue="ingest", reason="malformed"
    ) == (rejected + 1)
    assert [r for r in caplog.records if getattr(r, "action", None) == "reject-message"]


async def test_several_records_in_one_notification() -> None:
    queue, submit = InMemoryQueue(), Recorder()
    body = notification(
        record("a.csv", etag="1"), record("b%2Fc.csv", etag="2"), record("d.csv", etag="3")
    )
    await consumer(queue, submit).handle(await deliver(queue, body))
    assert sorted(o.key for o in submit.objects) == ["a.csv", "b/c.csv", "d.csv"]
    assert len({o.idempotency_key for o in submit.objects}) == 3
    assert queue.messages == {}


class FlakyQueue(InMemoryQueue):
    """Fails its first receive and its first delete, as a network blip would."""

    def __init__(self) -> None:
        super().__init__()
        self.receive_failures = 1
        self.delete_failures = 1

    async def receive(self, *, max_messages: int = 10, wait_s: int = 20) -> list[Received]:
        if self.receive_failures:
            self.receive_failures -= 1
            raise ConnectionError("receive failed")
        return await super().receive(max_messages=max_messages, wait_s=wait_s)

    async def delete(self, receipt: str) -> None:
        if self.delete_failures:
            self.delete_failures -= 1
            raise ConnectionError("delete failed")
        await super().delete(receipt)


async def test_run_handles_batches_and_survives_failures() -> None:
    queue = FlakyQueue()
    queue.visibility_s = 0.2  # so the message whose delete failed comes back soon
    objects: list[UploadedObject] = []

    async def submit(obj: UploadedObject) -> None:
        objects.append(obj)

    bodies = [notification(record(f"f{i}.csv", etag=str(i))) for i in range(12)]
    bodies += [TEST_EVENT, "garbage"]
    await queue.send_many([Outgoing(b) for b in bodies])
    stop = asyncio.Event()
    task = asyncio.create_task(
        IngestConsumer(queue=queue, submit=submit, timings=TIMINGS).run(stop)
    )

    async def settled() -> bool:
        # Everything deleted but the malformed message, which is released on every receive.
        return [m.body for m in queue.messages.values()] == ["garbage"]

    await eventually(settled, timeout=10, interval=0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert {o.key for o in objects} == {f"f{i}.csv" for i in range(12)}
    # The first message handled was submitted twice: its delete failed, so it came back.
    assert sorted(o.key for o in objects).count("f0.csv") == 2
    assert len(objects) == 13
    assert queue.receive_failures == 0 and queue.delete_failures == 0
