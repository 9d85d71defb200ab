"""The queue on SQS through an aioboto3 client, sends and deletes batched."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tpf.queues.batching import Batcher
from tpf.queues.port import BATCH, Outgoing, QueueDepth, QueueError, Received


class SqsQueue:
    """One SQS queue through an aioboto3 client."""

    def __init__(self, client: Any, url: str, name: str) -> None:
        self.client, self.url, self.name = client, url, name
        self._sends: Batcher[Outgoing] = Batcher(self._send_batch)
        self._deletes: Batcher[str] = Batcher(self._delete_batch)

    @classmethod
    async def open(cls, client: Any, name: str) -> SqsQueue:
        response = await client.get_queue_url(QueueName=name)
        return cls(client, response["QueueUrl"], name)

    async def send(self, message: Outgoing) -> None:
        await self._sends.submit(message)

    async def send_many(self, messages: Sequence[Outgoing]) -> None:
        await asyncio.gather(*(self._sends.submit(m) for m in messages))

    async def delete(self, receipt: str) -> None:
        await self._deletes.submit(receipt)

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
        response = await self.client.send_message_batch(
            QueueUrl=self.url,
            Entries=[
                {"Id": str(i), "MessageBody": m.body, "DelaySeconds": m.delay_s}
                for i, m in enumerate(messages)
            ],
        )
        return _outcomes(len(messages), response)

    async def _delete_batch(self, receipts: list[str]) -> list[Exception | None]:
        response = await self.client.delete_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
        )
        return _outcomes(len(receipts), response)


def _outcomes(count: int, response: dict[str, Any]) -> list[Exception | None]:
    outcomes: list[Exception | None] = [None] * count
    for failed in response.get("Failed", []):
        outcomes[int(failed["Id"])] = QueueError(f"{failed.get('Code')}: {failed.get('Message')}")
    return outcomes
