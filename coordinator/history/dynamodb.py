"""The history table on DynamoDB: an item per group of changes, keyed by execution and the
first change's version; the group's later changes ride in its ``nx`` list (items written before
2026-12 have none)."""

from __future__ import annotations

import asyncio
from typing import Any

from coordinator.history.port import Change, Group
from tpf.dynamodb import deserialize, serialize
from tpf.records import Status, partition_key
from tpf.retention import EXECUTION_TTL


def to_item(group: Group) -> dict[str, Any]:
    first = group[0]
    item: dict[str, Any] = {
        "pk": partition_key(first.tenant_id, first.execution_id),
        "sk": first.version,
        **_entry(first),
        "ttl": group[-1].at_ms // 1000 + int(EXECUTION_TTL.total_seconds()),
    }
    if len(group) > 1:
        item["nx"] = [{"v": c.version, **_entry(c)} for c in group[1:]]
    return item


def _entry(change: Change) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "at": change.at_ms,
        "st": change.status.value,
        "si": change.step_index,
        "a": change.attempt,
        "by": change.actor,
    }
    optional = {
        "ps": change.previous.value if change.previous else None,
        "tk": change.transition_key,
        "ec": change.error_code,
        "why": change.reason,
        "w": change.worker,
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    return entry


def from_item(tenant_id: str, execution_id: str, item: dict[str, Any]) -> list[Change]:
    first = _change(tenant_id, execution_id, int(item["sk"]), item)
    return [first, *(_change(tenant_id, execution_id, int(e["v"]), e) for e in item.get("nx", ()))]


def _change(tenant_id: str, execution_id: str, version: int, entry: dict[str, Any]) -> Change:
    return Change(
        tenant_id=tenant_id,
        execution_id=execution_id,
        version=version,
        at_ms=int(entry["at"]),
        status=Status(entry["st"]),
        previous=Status(entry["ps"]) if "ps" in entry else None,
        step_index=int(entry["si"]),
        attempt=int(entry["a"]),
        transition_key=entry.get("tk"),
        error_code=entry.get("ec"),
        actor=str(entry["by"]),
        reason=entry.get("why"),
        worker=entry.get("w"),
    )


class DynamoHistoryTable:
    """The history table over an aioboto3 DynamoDB client."""

    def __init__(self, client: Any, table_name: str, *, attempts: int = 4) -> None:
        self.client, self.table_name, self.attempts = client, table_name, attempts

    async def put_many(self, groups: list[Group]) -> list[Exception | None]:
        pending = {_key(g[0]): g for g in groups}
        for attempt in range(self.attempts):
            requests = [{"PutRequest": {"Item": serialize(to_item(g))}} for g in pending.values()]
            response = await self.client.batch_write_item(
                RequestItems={self.table_name: requests}, ReturnConsumedCapacity="TOTAL"
            )
            unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not unprocessed:
                pending = {}
                break
            # Throttled items come back unprocessed: retry only those, with a short backoff.
            keys = {_key_of(r["PutRequest"]["Item"]) for r in unprocessed}
            pending = {k: g for k, g in pending.items() if k in keys}
            await asyncio.sleep(0.05 * 2**attempt)
        failed = Exception("history entries unprocessed after retries")
        return [failed if _key(g[0]) in pending else None for g in groups]

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        response = await self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": partition_key(tenant_id, execution_id)}},
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        # Items come in key order, so a version written twice keeps the later item's entry.
        entries = {
            c.version: c
            for item in response["Items"]
            for c in from_item(tenant_id, execution_id, deserialize(item))
        }
        return [entries[v] for v in sorted(entries)][:limit]


def _key(change: Change) -> tuple[str, str, int]:
    return (change.tenant_id, change.execution_id, change.version)


def _key_of(item: dict[str, Any]) -> tuple[str, str, int]:
    tenant_id, _, execution_id = item["pk"]["S"].partition("#")
    return (tenant_id, execution_id, int(item["sk"]["N"]))
