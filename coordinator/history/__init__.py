"""Execution history: one small item per state change, kept as long as the execution.

An entry is keyed by the record's ``version``, which every state change increments, so writing
an entry twice is harmless and entries sort in the order the changes happened.

Lifecycle entries are written after the change they describe, off the commit path, batched 25 to
a ``BatchWriteItem``: a coordinator that dies in between loses at most the entries of its last
linger window. History is for people; the execution record is the truth. Operator actions
(re-drive, cancel) are written before the API answers, so who did what and why is never lost.
"""

from __future__ import annotations

import asyncio
import logging

from coordinator.history.dynamodb import DynamoHistoryTable
from coordinator.history.memory import InMemoryHistoryTable
from coordinator.history.port import Change, HistoryTable
from tpf.queues import Batcher

log = logging.getLogger("tpf.coordinator")

BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem maximum
LINGER_S = 0.05


class History:
    """Appends changes through a batching writer; ``close`` flushes what is pending."""

    def __init__(self, table: HistoryTable, *, enabled: bool = True) -> None:
        self.table, self.enabled = table, enabled
        self._writer: Batcher[Change] = Batcher(
            self.table.put_many, linger_s=LINGER_S, size=BATCH_WRITE_LIMIT
        )
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, change: Change) -> None:
        """Write ``change`` soon, without delaying the caller."""
        if not self.enabled:
            return
        task = asyncio.get_running_loop().create_task(self._write(change))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def record_now(self, change: Change) -> None:
        """Write ``change`` before returning (operator actions)."""
        await self._writer.submit(change)

    async def list(self, tenant_id: str, execution_id: str, *, limit: int = 100) -> list[Change]:
        return await self.table.list(tenant_id, execution_id, limit=limit)

    async def close(self) -> None:
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _write(self, change: Change) -> None:
        try:
            await self._writer.submit(change)
        except Exception:
            log.warning(
                "history entry not written",
                exc_info=True,
                extra={"action": "history", "executionId": change.execution_id},
            )


__all__ = ["Change", "DynamoHistoryTable", "History", "HistoryTable", "InMemoryHistoryTable"]
