"""The ingest channel: S3 upload notifications for the inbox bucket, consumed by every coordinator
replica. Each uploaded object becomes exactly one submission through a ``submit`` callback; this
module knows nothing about pipelines.

Exactly one execution per object version comes from the idempotency key, not from the queue: SQS
and S3 both deliver at least once, so a notification may arrive twice (and an identical re-upload
sends a second one); ``UploadedObject.idempotency_key`` is the same every time, and the submit it
is given is idempotent on it.

A message is deleted only once every object in it was submitted (or deliberately ignored). A
failed submit leaves it for redelivery after its visibility timeout; a malformed body is released
at once so the queue's redrive policy carries it to the ingest dead-letter queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from tpf import metrics
from tpf.errors import InvalidInput, TpfError
from tpf.loops import consume
from tpf.queues import Queue, Received
from tpf.settings import Timings
from tpf.untrusted import parse_json

log = logging.getLogger("tpf.coordinator")

OBJECT_CREATED = "ObjectCreated:"
TEST_EVENT = "s3:TestEvent"
# S3 reports the version of an object written while versioning was never enabled (or suspended)
# as "null": that "version" is overwritten in place, so it cannot tell two uploads apart.
_NULL_VERSION = "null"


class MalformedNotification(TpfError):
    """A message on the ingest queue that is not an S3 event notification."""


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str
    """Decoded: S3 URL-encodes keys in notifications (spaces as ``+`` or ``%20``)."""
    version_id: str | None
    etag: str | None
    """Without quotes."""
    size: int
    event_time: str | None

    def as_input(self) -> dict[str, Any]:
        """The execution's input: enough to read exactly this version of the object."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "versionId": self.version_id,
            "etag": self.etag,
            "size": self.size,
        }

    @property
    def idempotency_key(self) -> str:
        """The same for every notification of the same bytes under one key.

        From bucket, key and ETag: an identical re-upload is the same execution, different
        content under the same key another one (which reads its own version, see the CSV
        pipeline's ``Files.read``). Only a notification without an ETag falls back to the
        version id.
        """
        version = self.version_id if self.version_id not in (None, "", _NULL_VERSION) else None
        identity = f"etag:{self.etag}" if self.etag or version is None else version
        material = f"{self.bucket}\x1f{self.key}\x1f{identity}"
        return "s3:" + hashlib.sha256(material.encode()).hexdigest()[:40]


Submit = Callable[[UploadedObject], Awaitable[None]]


def parse_notification(body: str) -> list[UploadedObject]:
    """The created objects of an S3 event notification.

    ``[]`` for ``s3:TestEvent`` (sent when a notification configuration is written); records of
    other events (removals, restores...) are left out. Raises ``MalformedNotification`` for
    anything that is not a notification.
    """
    return _parse(body)[0]


def _parse(body: str) -> tuple[list[UploadedObject], list[str]]:
    """The created objects, and the names of the other events, of a notification."""
    try:
        document = parse_json(body)
    except InvalidInput as exc:
        raise MalformedNotification(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedNotification("not a JSON object")
    if document.get("Event") == TEST_EVENT:
        return [], []
    records = document.get("Records")
    if not isinstance(records, list):
        raise MalformedNotification("neither Records nor an s3:TestEvent")
    created: list[UploadedObject] = []
    other_events: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            raise MalformedNotification("a record is not a JSON object")
        event_name = record.get("eventName")
        if not isinstance(event_name, str):
            raise MalformedNotification("a record has no eventName")
        if _is_object_created(event_name):
            created.append(_uploaded_object(record))
        else:
            other_events.append(event_name)
    return created, other_events


def _uploaded_object(record: dict[str, Any]) -> UploadedObject:
    s3 = record.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    if not isinstance(bucket, dict) or not isinstance(obj, dict):
        raise MalformedNotification("a record has no s3.bucket or s3.object")
    name, key = bucket.get("name"), obj.get("key")
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise MalformedNotification("a record has no bucket name or object key")
    try:
        size = int(obj.get("size") or 0)
    except (TypeError, ValueError) as exc:
        raise MalformedNotification(f"a record has a bad object size: {exc}") from exc
    etag = obj.get("eTag")
    version_id = obj.get("versionId")
    event_time = record.get("eventTime")
    return UploadedObject(
        bucket=name,
        key=unquote_plus(key),
        version_id=str(version_id) if version_id else None,
        etag=str(etag).strip('"') if etag else None,
        size=size,
        event_time=str(event_time) if event_time else None,
    )


def _is_object_created(event_name: str) -> bool:
    # S3 sends "ObjectCreated:Put"; accept the "s3:" form configurations use as well.
    return event_name.removeprefix("s3:").startswith(OBJECT_CREATED)


class IngestConsumer:
    def __init__(
        self, *, queue: Queue, submit: Submit, timings: Timings, suffix: str = ".csv"
    ) -> None:
        self.queue, self.submit, self.timings, self.suffix = queue, submit, timings, suffix

    async def run(self, stop: asyncio.Event) -> None:
        wait_s = int(self.timings.long_poll.total_seconds())
        await consume(
            self.queue, self.handle, stop, wait_s=wait_s, what="ingest", role="coordinator"
        )

    async def handle(self, message: Received) -> None:
        try:
            objects, other_events = _parse(message.body)
        except MalformedNotification as exc:
            self._rejected(message, str(exc))
            await self.queue.change_visibility(message.receipt, 0)
            return
        for event_name in other_events:
            metrics.INGESTED.labels(outcome="ignored").inc()
            log.info(
                "ignored S3 event %s",
                event_name,
                extra={
                    "action": "ingest-ignored",
                    "reason": "event",
                    "eventName": event_name,
                    "messageId": message.message_id,
                },
            )
        wanted = [o for o in objects if self._wanted(o)]
        outcomes = await asyncio.gather(
            *(self._submit(message, o) for o in wanted), return_exceptions=True
        )
        if any(isinstance(outcome, BaseException) for outcome in outcomes):
            # Submitted objects are idempotent on redelivery; the others get another try.
            return
        await self.queue.delete(message.receipt)

    def _wanted(self, obj: UploadedObject) -> bool:
        if obj.key.endswith(self.suffix):
            return True
        metrics.INGESTED.labels(outcome="ignored").inc()
        log.info(
            "ignored upload: key does not end with %s",
            self.suffix,
            extra={
                "action": "ingest-ignored",
                "reason": "suffix",
                "bucket": obj.bucket,
                "key": obj.key,
            },
        )
        return False

    async def _submit(self, message: Received, obj: UploadedObject) -> None:
        identity = {
            "bucket": obj.bucket,
            "key": obj.key,
            "idempotencyKey": obj.idempotency_key,
            "messageId": message.message_id,
        }
        try:
            await self.submit(obj)
        except Exception:
            metrics.INGESTED.labels(outcome="failed").inc()
            log.exception(
                "upload not submitted; its notification will be redelivered",
                extra={"action": "ingest-failed", **identity},
            )
            raise
        metrics.INGESTED.labels(outcome="submitted").inc()
        log.info("upload submitted", extra={"action": "ingest", **identity})

    def _rejected(self, message: Received, detail: str) -> None:
        metrics.MESSAGES_REJECTED.labels(
            role="coordinator", queue="ingest", reason="malformed"
        ).inc()
        log.warning(
            "message rejected",
            extra={
                "action": "reject-message",
                "reason": "malformed",
                "detail": detail,
                "messageId": message.message_id,
                "queue": self.queue.name,
            },
        )
