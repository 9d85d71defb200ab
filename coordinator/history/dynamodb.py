"""The history table on DynamoDB: one item per change, keyed by execution and version."""

from __future__ import annotations

import asyncio
from typing import Any

from coordinator.history.port import Change
from tpf.dynamodb import deserialize, serialize
from tpf.records import Status, partition_key
from tpf.retention import EXECUTION_TTL


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
        "w": change.worker,
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
        worker=item.get("w"),
    )


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
