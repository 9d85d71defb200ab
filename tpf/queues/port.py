"""The queue port: what the coordinator and the workers need of a message queue.

``memory`` is its fake (with SQS's visibility semantics), ``sqs`` its adapter; one contract suite
(``tests/integration/test_queue_contract.py``) runs on both, against moto and LocalStack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tpf.errors import TpfError

BATCH = 10
"""SQS's limit on the entries of one batch request."""
MAX_BYTES = 256 * 1024
"""SQS's default ``MaximumMessageSize``, which also bounds the bodies of one batch together."""


def packed(sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Indexes grouped in order so no group's sizes add up past ``limit``; one oversized item
    goes alone (the queue refuses it, and only it)."""
    groups: list[list[int]] = []
    total = limit + 1
    for index, size in enumerate(sizes):
        if total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups


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
    max_bytes: int
    """The largest body the queue takes (the SQS queue's ``MaximumMessageSize``)."""

    async def send(self, message: Outgoing) -> None: ...
    async def send_many(self, messages: Sequence[Outgoing]) -> None: ...
    async def receive(self, *, max_messages: int = BATCH, wait_s: int = 20) -> list[Received]: ...
    async def delete(self, receipt: str) -> None:
        """Acknowledge a handled message; it may leave with later deletes (``flush``)."""

    async def flush(self) -> None:
        """Send the deletes still waiting to share a request (before the process stops)."""

    async def change_visibility(self, receipt: str, seconds: int) -> None: ...
    async def backlog(self) -> int:
        """Messages waiting to be received (approximate on SQS)."""
