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
from dataclasses import dataclass
from typing import Any, Protocol

from tpf.dynamodb import deserialize, serialize
from tpf.queues import Batcher
from tpf.records import ExecutionRecord, Status, partition_key
from tpf.retention import EXECUTION_TTL

log = logging.getLogger("tpf.coordinator")

BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem maximum
LINGER_S = 0.05


@dataclass(frozen=True)
class Change:
    """One state change of one execution."""

    tenant_id: str
    execution_id: str
    version: int
    at_ms: int
    status: Status
    previous: Status | None
    step_index: int
    attempt: int
    transition_key: str | None = None
    error_code: str | None = None
    actor: str = "coordinator"
    reason: str | None = None

    @classmethod
    def of(
        cls,
        before: ExecutionRecord | None,
        after: ExecutionRecord,
        *,
        actor: str = "coordinator",
        reason: str | None = None,
    ) -> Change:
        return cls(
            tenant_id=after.tenant_id,
            execution_id=after.execution_id,
            version=after.version,
            at_ms=after.updated_at_ms,
            status=after.status,
            previous=before.status if before is not None else None,
            step_index=after.step_index,
            attempt=after.attempt,
            transition_key=after.transition_key,
            error_code=after.error_code,
            actor=actor,
            reason=reason,
        )

    def as_json(self) -> dict[str, Any]:
        """The API's form (TPF-style camelCase)."""
        return {
            "version": self.version,
            "atEpochMs": self.at_ms,
            "status": self.status.value,
            "previousStatus": self.previous.value if self.previous else None,
            "stepIndex": self.step_index,
            "attempt": self.attempt,
            "transitionKey": self.transition_key,
            "errorCode": self.error_code,
            "actor": self.actor,
            "reason": self.reason,
        }


def to_item(change: Change) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": partition_key(change.tenant_id, change.execution_id),
        "sk": change.version,
        "at": change.at_ms,
        "st": change.status.value,
        "si": change.step_index,
        "a": change.attempt,
        "by": change.actor,
        "ttl": change.at_ms // 1000 + int(EXECUTION_TTL.total_seconds()),
    }
    optional = {
        "ps": change.previous.value if change.previous else None,
        "tk": change.transition_key,
        "ec": change.error_code,
        "why": change.reason,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item


def from_item(tenant_id: str, execution_id: str, item: dict[str, Any]) -> Change:
    return Change(
        tenant_id=tenant_id,
        execution_id=execution_id,
        version=int(item["sk"]),
        at_ms=int(item["at"]),
        status=Status(item["st"]),
        previous=Status(item["ps"]) if "ps" in item else None,
        step_index=int(item["si"]),
        attempt=int(item["a"]),
        transition_key=item.get("tk"),
        error_code=item.get("ec"),
        actor=str(item["by"]),
        reason=item.get("why"),
    )


class HistoryTable(Protocol):
    async def put_many(self, changes: list[Change]) -> list[Exception | None]:
        """Write up to 25 entries; one outcome per entry."""

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        """Entries in version order."""


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


class InMemoryHistoryTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[int, Change]] = {}

    async def put_many(self, changes: list[Change]) -> list[Exception | None]:
        for change in changes:
            self.items.setdefault((change.tenant_id, change.execution_id), {})[change.version] = (
                change
            )
        return [None] * len(changes)

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        entries = self.items.get((tenant_id, execution_id), {})
        return [entries[v] for v in sorted(entries)][:limit]


class DynamoHistoryTable:
    """The history table over an aioboto3 DynamoDB client."""

    def __init__(self, client: Any, table_name: str, *, attempts: int = 4) -> None:
        self.client, self.table_name, self.attempts = client, table_name, attempts

    async def put_many(self, changes: list[Change]) -> list[Exception | None]:
        pending = {(c.tenant_id, c.execution_id, c.version): c for c in changes}
        for attempt in range(self.attempts):
            requests = [{"PutRequest": {"Item": serialize(to_item(c))}} for c in pending.values()]
            response = await self.client.batch_write_item(
                RequestItems={self.table_name: requests}, ReturnConsumedCapacity="TOTAL"
            )
            unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not unprocessed:
                pending = {}
                break
            # Throttled entries come back unprocessed: retry only those, with a short backoff.
            keys = {_key_of(r["PutRequest"]["Item"]) for r in unprocessed}
            pending = {k: c for k, c in pending.items() if k in keys}
            await asyncio.sleep(0.05 * 2**attempt)
        failed = Exception("history entry unprocessed after retries")
        return [
            failed if (c.tenant_id, c.execution_id, c.version) in pending else None for c in changes
        ]

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        response = await self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition_key(tenant_id, execution_id)}},
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [from_item(tenant_id, execution_id, deserialize(item)) for item in response["Items"]]


def _key_of(item: dict[str, Any]) -> tuple[str, str, int]:
    tenant_id, _, execution_id = item["pk"]["S"].partition("#")
    return (tenant_id, execution_id, int(item["sk"]["N"]))
