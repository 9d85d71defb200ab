"""Queues: an SQS adapter that batches, and an in-memory fake with the same behaviour.

Callers send and delete one message at a time; ``Batcher`` coalesces concurrent calls into
requests of 10 (SQS's batch limit) and returns to each caller once its own entry is durable, so
throughput comes from batching without weakening "sent means sent".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from tpf.errors import TpfError

BATCH = 10
T = TypeVar("T")


class QueueError(TpfError):
    """An SQS entry that failed inside an otherwise successful batch request."""


@dataclass(frozen=True)
class Received:
    message_id: str
    receipt: str
    body: str
    receive_count: int


@dataclass(frozen=True)
class Outgoing:
    body: str
    delay_s: int = 0


@dataclass(frozen=True)
class QueueDepth:
    """Messages in a queue by state; ``None`` where the queue does not say."""

    visible: int
    """Waiting to be received."""
    in_flight: int | None = None
    """Received and not yet deleted (SQS: not visible)."""
    delayed: int | None = None
    """Sent with a delay that has not passed yet."""


class Queue(Protocol):
    name: str

    async def send(self, message: Outgoing) -> None: ...
    async def send_many(self, messages: Sequence[Outgoing]) -> None: ...
    async def receive(self, *, max_messages: int = BATCH, wait_s: int = 20) -> list[Received]: ...
    async def delete(self, receipt: str) -> None: ...
    async def change_visibility(self, receipt: str, seconds: int) -> None: ...
    async def backlog(self) -> int:
        """Messages waiting to be received (approximate on SQS)."""


@dataclass
class _Pending(Generic[T]):
    item: T
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher(Generic[T]):
    """Gathers items from concurrent callers for up to ``linger_s``; flushes ``size`` at a time."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[Exception | None]]],
        linger_s: float = 0.002,
        size: int = BATCH,
    ) -> None:
        self._flush = flush
        self._linger_s = linger_s
        self._size = size
        self._pending: list[_Pending[T]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: T) -> None:
        entry = _Pending(item)
        self._pending.append(entry)
        if len(self._pending) >= self._size:
            self._drain()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._drain)
        await entry.done

    def _drain(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self._size], self._pending[self._size :]
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[_Pending[T]]) -> None:
        try:
            outcomes = await self._flush([p.item for p in batch])
        except Exception as exc:  # the whole request failed: every caller learns it
            outcomes = [exc] * len(batch)
        for entry, outcome in zip(batch, outcomes, strict=True):
            if entry.done.done():
                continue
            if outcome is None:
                entry.done.set_result(None)
            else:
                entry.done.set_exception(outcome)


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


@dataclass
class _Stored:
    message_id: str
    body: str
    visible_at: float
    receives: int = 0
    receipt: str = ""


class InMemoryQueue:
    """A fake with SQS's visibility semantics (redelivery after the timeout), for unit tests."""

    def __init__(self, name: str = "memory", *, visibility_s: float = 30.0) -> None:
        self.name = name
        self.visibility_s = visibility_s
        self.messages: dict[str, _Stored] = {}
        self._counter = 0
        self._arrived = asyncio.Event()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def send(self, message: Outgoing) -> None:
        self._counter += 1
        message_id = f"m-{self._counter}"
        self.messages[message_id] = _Stored(message_id, message.body, self._now() + message.delay_s)
        self._arrived.set()

    async def send_many(self, messages: Sequence[Outgoing]) -> None:
        for message in messages:
            await self.send(message)

    async def receive(self, *, max_messages: int = BATCH, wait_s: int = 20) -> list[Received]:
        deadline = self._now() + wait_s
        while True:
            now = self._now()
            ready = [m for m in self.messages.values() if m.visible_at <= now][:max_messages]
            if ready or now >= deadline:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=min(0.05, deadline - now))
        received = []
        for stored in ready:
            stored.receives += 1
            stored.receipt = f"{stored.message_id}#{stored.receives}"
            stored.visible_at = now + self.visibility_s
            received.append(
                Received(stored.message_id, stored.receipt, stored.body, stored.receives)
            )
        return received

    async def delete(self, receipt: str) -> None:
        message_id, _, _ = receipt.partition("#")
        stored = self.messages.get(message_id)
        if stored is not None and stored.receipt == receipt:
            del self.messages[message_id]

    async def change_visibility(self, receipt: str, seconds: int) -> None:
        message_id, _, _ = receipt.partition("#")
        stored = self.messages.get(message_id)
        if stored is not None and stored.receipt == receipt:
            stored.visible_at = self._now() + seconds

    async def backlog(self) -> int:
        now = self._now()
        return sum(1 for m in self.messages.values() if m.visible_at <= now)

    async def depth(self) -> QueueDepth:
        now = self._now()
        waiting = [m for m in self.messages.values() if m.visible_at > now]
        return QueueDepth(
            visible=len(self.messages) - len(waiting),
            in_flight=sum(1 for m in waiting if m.receives),
            delayed=sum(1 for m in waiting if not m.receives),
        )
