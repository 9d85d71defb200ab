"""The queue on SQS through an aioboto3 client, sends and deletes batched."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from tpf.queues.batching import Batcher
from tpf.queues.port import BATCH, MAX_BYTES, Outgoing, QueueDepth, QueueError, Received, packed

log = logging.getLogger("tpf.queues")
_OPEN: weakref.WeakSet[SqsQueue] = weakref.WeakSet()
DELETE_LINGER_S = 0.2
"""How long a delete waits for others to share its request. A send's caller waits for it (2 ms
at most); nobody waits for a delete (``delete``), and in a full batch it is a tenth of a
request. A handled message stays invisible far longer than this (its visibility timeout)."""


async def flush_deletes(client: Any) -> None:
    """Send the deletes still waiting in every queue opened on ``client``: before it closes
    (``tpf.substrate.open_clients``), so none is left to a closed client."""
    for queue in [q for q in _OPEN if q.client is client]:
        await queue.flush()


class SqsQueue:
    """One SQS queue through an aioboto3 client."""

    def __init__(self, client: Any, url: str, name: str, *, max_bytes: int = MAX_BYTES) -> None:
        self.client, self.url, self.name, self.max_bytes = client, url, name, max_bytes
        _OPEN.add(self)
        self._sends: Batcher[Outgoing] = Batcher(self._send_batch)
        self._deletes: Batcher[str] = Batcher(self._delete_batch, linger_s=DELETE_LINGER_S)

    @classmethod
    async def open(cls, client: Any, name: str) -> SqsQueue:
        url = (await client.get_queue_url(QueueName=name))["QueueUrl"]
        found = await client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["MaximumMessageSize"]
        )
        limit = int(found.get("Attributes", {}).get("MaximumMessageSize", MAX_BYTES))
        return cls(client, url, name, max_bytes=limit)

    async def send(self, message: Outgoing) -> None:
        await self._sends.submit(message)

    async def send_many(self, messages: Sequence[Outgoing]) -> None:
        await asyncio.gather(*(self._sends.submit(m) for m in messages))

    async def delete(self, receipt: str) -> None:
        """Acknowledge a handled message: queued to share a request with others, without
        holding the caller. A delete that fails is logged; its message then comes back after
        its visibility timeout, to a handler that takes it as the duplicate it is."""
        self._deletes.post(receipt, self._delete_failed)

    async def flush(self) -> None:
        """Send the deletes still waiting for company (before the process stops)."""
        await self._deletes.flush()

    def _delete_failed(self, receipt: str, exc: BaseException) -> None:
        log.warning(
            "a delete failed; the message will be delivered again: %s",
            exc,
            extra={"action": "delete-failed", "queue": self.name},
        )

    async def receive(self, *, max_messages: int = BATCH, wait_s: int = 20) -> list[Received]:
        response = await self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Received(
                message_id=m["MessageId"],
                receipt=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in response.get("Messages", [])
        ]

    async def change_visibility(self, receipt: str, seconds: int) -> None:
        await self.client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )

    async def backlog(self) -> int:
        response = await self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(response["Attributes"]["ApproximateNumberOfMessages"])

    async def depth(self) -> QueueDepth:
        """Messages by state, in one request (approximate)."""
        response = await self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        found = response["Attributes"]
        return QueueDepth(
            visible=int(found["ApproximateNumberOfMessages"]),
            in_flight=int(found["ApproximateNumberOfMessagesNotVisible"]),
            delayed=int(found["ApproximateNumberOfMessagesDelayed"]),
        )

    async def _send_batch(self, messages: list[Outgoing]) -> list[Exception | None]:
        """Up to 10 messages in as few requests as their bytes allow (a batch's bodies together
        may not pass the queue's maximum); a message over it alone fails, and only it."""
        sizes = [len(m.body.encode()) for m in messages]
        outcomes: list[Exception | None] = [None] * len(messages)
        for group in packed(sizes, self.max_bytes):
            if sizes[group[0]] > self.max_bytes:
                outcomes[group[0]] = QueueError(
                    f"a message of {sizes[group[0]]} bytes is over the queue's {self.max_bytes}"
                )
                continue
            response = await self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": messages[i].body,
                        "DelaySeconds": messages[i].delay_s,
                    }
                    for i in group
                ],
            )
            for i, outcome in zip(group, _outcomes(len(messages), response, group), strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _delete_batch(self, receipts: list[str]) -> list[Exception | None]:
        response = await self.client.delete_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
        )
        return _outcomes(len(receipts), response)


def _outcomes(
    count: int, response: dict[str, Any], ids: Sequence[int] | None = None
) -> list[Exception | None]:
    """One outcome per entry id sent (``ids``, else ``0..count-1``), in that order."""
    sent = list(ids) if ids is not None else list(range(count))
    failures = {
        int(f["Id"]): QueueError(f"{f.get('Code')}: {f.get('Message')}")
        for f in response.get("Failed", [])
    }
    return [failures.get(i) for i in sent]
