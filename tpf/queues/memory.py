"""The queue in memory: SQS's visibility semantics (redelivery after the timeout), no network."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from tpf.queues.port import BATCH, MAX_BYTES, Outgoing, QueueDepth, QueueError, Received


@dataclass
class _Stored:
    message_id: str
    body: str
    visible_at: float
    receives: int = 0
    receipt: str = ""


class InMemoryQueue:
    """A fake with SQS's visibility semantics (redelivery after the timeout), for unit tests."""

    def __init__(
        self, name: str = "memory", *, visibility_s: float = 30.0, max_bytes: int = MAX_BYTES
    ) -> None:
        self.name, self.max_bytes = name, max_bytes
        self.visibility_s = visibility_s
        self.messages: dict[str, _Stored] = {}
        self._counter = 0
        self._arrived = asyncio.Event()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def send(self, message: Outgoing) -> None:
        size = len(message.body.encode())
        if size > self.max_bytes:
            raise QueueError(f"a message of {size} bytes is over the queue's {self.max_bytes}")
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

    async def flush(self) -> None:
        """Deletes here are done when ``delete`` returns."""

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
