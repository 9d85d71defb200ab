"""In-memory execution table: the fake behind fast domain tests, with its own contract tests.

It stores exactly the items the DynamoDB adapter would (``to_item``) and evaluates guards the
way DynamoDB evaluates the adapter's condition expressions, so the two stay interchangeable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from coordinator.store.port import DueEntry, Guard, Page
from coordinator.store.search import LaneEntry, LanePage
from tpf.errors import AlreadyExists, NotFound, StaleRecord
from tpf.records import (
    CREATED_AT,
    DUE_AT,
    DUE_SHARD,
    SEARCH_LANE,
    WAKE_AT,
    ExecutionRecord,
    Status,
    due_shard,
    from_item,
    partition_key,
    search_lane,
    to_item,
)


def guard_holds(item: dict[str, Any], guard: Guard) -> bool:
    """Python mirror of ``dynamodb.condition_for(guard)``."""
    return (
        item["v"] == guard.version
        and Status(item["st"]) in guard.statuses
        and (guard.transition_key is None or item.get("tk") == guard.transition_key)
        and (guard.due_by_ms is None or (DUE_AT in item and item[DUE_AT] <= guard.due_by_ms))
        and (guard.await_unit_id is None or item.get("au") == guard.await_unit_id)
    )


class InMemoryExecutionTable:
    def __init__(self, *, shards: int = 8) -> None:
        self.shards = shards
        self.items: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.failed_writes = 0
        self._lock = asyncio.Lock()

    async def insert(self, record: ExecutionRecord) -> None:
        async with self._lock:
            pk = partition_key(record.tenant_id, record.execution_id)
            self.writes += 1
            if pk in self.items:
                self.failed_writes += 1
                raise AlreadyExists("execution exists", current=from_item(self.items[pk]))
            self.items[pk] = to_item(record, shards=self.shards)

    async def replace(self, record: ExecutionRecord, guard: Guard) -> None:
        async with self._lock:
            pk = partition_key(record.tenant_id, record.execution_id)
            self.writes += 1
            current = self.items.get(pk)
            if current is None:
                self.failed_writes += 1
                raise NotFound(f"no execution {record.execution_id}")
            if not guard_holds(current, guard):
                self.failed_writes += 1
                raise StaleRecord("execution changed", current=from_item(current))
            self.items[pk] = to_item(record, shards=self.shards)

    async def renew(
        self, tenant_id: str, execution_id: str, *, transition_key: str, due_at_ms: int
    ) -> None:
        async with self._lock:
            current = self.items.get(partition_key(tenant_id, execution_id))
            self.writes += 1
            if current is None:
                self.failed_writes += 1
                raise NotFound(f"no execution {execution_id}")
            if not renewable(current, transition_key, due_at_ms):
                self.failed_writes += 1
                raise StaleRecord("transition no longer running", current=from_item(current))
            current[DUE_AT] = due_at_ms

    async def get(
        self, tenant_id: str, execution_id: str, *, consistent: bool = True
    ) -> ExecutionRecord | None:
        item = self.items.get(partition_key(tenant_id, execution_id))
        return from_item(item) if item else None

    async def due(self, shard: str, *, now_ms: int, limit: int) -> list[DueEntry]:
        hits = sorted(
            (
                item
                for item in self.items.values()
                if item.get(DUE_SHARD) == shard and WAKE_AT in item and item[WAKE_AT] <= now_ms
            ),
            key=lambda item: item[WAKE_AT],
        )
        return [due_entry(item) for item in hits[:limit]]

    async def rewake(self, record: ExecutionRecord, *, drop: bool = False) -> bool:
        async with self._lock:
            current = self.items.get(partition_key(record.tenant_id, record.execution_id))
            self.writes += 1
            if current is None or not wakes_as_seen(current, record, drop=drop):
                self.failed_writes += 1
                return False
            if drop:
                current.pop(WAKE_AT)
                current.pop(DUE_SHARD)
            else:
                current[WAKE_AT] = current[DUE_AT]
                current[DUE_SHARD] = due_shard(record.execution_id, self.shards)
            return True

    async def lane(
        self, lane: str, *, since_ms: int, until_ms: int, after: LaneEntry | None, limit: int
    ) -> LanePage:
        tenant_id = lane.rpartition("#")[0]
        start = (
            None if after is None else (after.created_at_ms, f"{tenant_id}#{after.execution_id}")
        )
        hits = sorted(
            (
                item
                for item in self.items.values()
                if item.get(SEARCH_LANE) == lane
                and since_ms <= item[CREATED_AT] < until_ms
                and (start is None or index_position(item) < start)
            ),
            key=index_position,
            reverse=True,
        )[:limit]
        entries = [LaneEntry(int(i[CREATED_AT]), str(i["pk"]).partition("#")[2]) for i in hits]
        # DynamoDB returns a LastEvaluatedKey whenever a Query stops at its Limit.
        return LanePage(entries, more=len(entries) == limit)

    async def get_many(self, tenant_id: str, execution_ids: Sequence[str]) -> list[ExecutionRecord]:
        items = (self.items.get(partition_key(tenant_id, e)) for e in execution_ids)
        return [from_item(item) for item in items if item is not None]

    async def add_search_keys(self, record: ExecutionRecord) -> bool:
        async with self._lock:
            current = self.items.get(partition_key(record.tenant_id, record.execution_id))
            self.writes += 1
            if current is None or current["st"] != record.status or SEARCH_LANE in current:
                self.failed_writes += 1
                return False
            current[SEARCH_LANE] = search_lane(record.tenant_id, record.status)
            return True

    async def page(
        self,
        *,
        statuses: Iterable[Status] | None = None,
        pipeline_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        wanted = {s.value for s in statuses} if statuses else None
        keys = sorted(self.items)
        start = keys.index(json.loads(cursor)) + 1 if cursor else 0
        window = keys[start : start + limit]
        records = [
            from_item(self.items[k])
            for k in window
            if (wanted is None or self.items[k]["st"] in wanted)
            and (pipeline_id is None or self.items[k]["p"] == pipeline_id)
        ]
        more = start + limit < len(keys)
        return Page(records, json.dumps(window[-1]) if more and window else None)


def index_position(item: dict[str, Any]) -> tuple[int, str]:
    """An entry's place in the search index: by creation time, ties by the table's key."""
    return int(item[CREATED_AT]), str(item["pk"])


def renewable(item: dict[str, Any], transition_key: str, due_at_ms: int) -> bool:
    """A heartbeat applies to the live transition and never shortens its deadline."""
    return (
        item["st"] in (Status.RUNNING.value, Status.WAIT_RETRY.value)
        and item.get("tk") == transition_key
        and DUE_AT in item
        and item[DUE_AT] < due_at_ms
    )


def wakes_as_seen(item: dict[str, Any], seen: ExecutionRecord, *, drop: bool) -> bool:
    """Python mirror of the condition of ``DynamoExecutionTable.rewake``."""
    same_wake = item.get(WAKE_AT) == seen.wake_at_ms
    if drop:
        return (
            same_wake
            and item["st"] == Status.WAITING_EXTERNAL.value
            and item.get("au") == seen.await_unit_id
        )
    return same_wake and DUE_AT in item


def due_entry(item: dict[str, Any]) -> DueEntry:
    tenant_id, _, execution_id = str(item["pk"]).partition("#")
    return DueEntry(tenant_id=tenant_id, execution_id=execution_id, wake_at_ms=int(item[WAKE_AT]))
