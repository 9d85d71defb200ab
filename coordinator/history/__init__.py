"""Execution history: small items of state changes, kept as long as the execution.

An entry is keyed by the record's ``version``, which every state change increments, so entries
sort in the order the changes happened. Entries of one execution that follow each other within
moments share an item (``Group``): a dispatch is held until the commit it leads to, or for
``HOLD_S``, so a transition costs one history write, not two (both fit one WRU).

Lifecycle entries are written after the change they describe, off the commit path, batched 25
items to a ``BatchWriteItem``: a coordinator that dies in between loses the dispatches it holds
and the entries of its last linger window. History is for people; the execution record is the
truth, and it shows a dispatch still held. Operator actions (re-drive, cancel) are written
before the API answers, so who did what and why is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from coordinator.history.dynamodb import DynamoHistoryTable
from coordinator.history.memory import InMemoryHistoryTable
from coordinator.history.port import Change, Group, HistoryTable
from tpf.queues import Batcher
from tpf.records import Status

log = logging.getLogger("tpf.coordinator")

BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem maximum
LINGER_S = 0.05
HOLD_S = 2.0
"""How long a dispatch's entry waits for the next change of its execution to share its item."""
MAX_GROUP = 4
"""Entries an item holds at most: four small entries stay under the 1 KB of one WRU."""


@dataclass
class _Held:
    changes: Group
    timer: asyncio.TimerHandle


class History:
    """Appends changes through a batching writer; ``close`` flushes what is pending."""

    def __init__(self, table: HistoryTable, *, enabled: bool = True, hold_s: float = HOLD_S):
        self.table, self.enabled, self.hold_s = table, enabled, hold_s
        self._writer: Batcher[Group] = Batcher(
            self.table.put_many, linger_s=LINGER_S, size=BATCH_WRITE_LIMIT
        )
        self._held: dict[tuple[str, str], _Held] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, change: Change) -> None:
        """Write ``change`` soon, without delaying the caller: a dispatch once the change it
        leads to joins it, or after ``hold_s``."""
        if not self.enabled:
            return
        group = (*self._release(change), change)
        if change.status is Status.RUNNING and len(group) < MAX_GROUP and self.hold_s > 0:
            key = (change.tenant_id, change.execution_id)
            timer = asyncio.get_running_loop().call_later(self.hold_s, self._flush_held, key)
            self._held[key] = _Held(group, timer)
            return
        self._write_soon(group)

    async def record_now(self, change: Change) -> None:
        """Write ``change`` before returning (operator actions), with a dispatch held for it."""
        await self._writer.submit((*self._release(change), change))

    async def list(self, tenant_id: str, execution_id: str, *, limit: int = 100) -> list[Change]:
        return await self.table.list(tenant_id, execution_id, limit=limit)

    async def close(self) -> None:
        for key in list(self._held):
            self._flush_held(key)
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _release(self, change: Change) -> Group:
        held = self._held.pop((change.tenant_id, change.execution_id), None)
        if held is None:
            return ()
        held.timer.cancel()
        return held.changes

    def _flush_held(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._write_soon(held.changes)

    def _write_soon(self, group: Group) -> None:
        task = asyncio.get_running_loop().create_task(self._write(group))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, group: Group) -> None:
        try:
            await self._writer.submit(group)
        except Exception:
            log.warning(
                "history entries not written",
                exc_info=True,
                extra={"action": "history", "executionId": group[0].execution_id},
            )


__all__ = [
    "Change",
    "DynamoHistoryTable",
    "Group",
    "History",
    "HistoryTable",
    "InMemoryHistoryTable",
]
