"""DynamoDB adapter of the execution table (aioboto3 low-level client).

Conditions are built from the guard's named parts; on a failed condition DynamoDB returns the
current item (``ALL_OLD``), which becomes the ``current`` of the domain error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from coordinator.store.memory import due_entry
from coordinator.store.port import DueEntry, Guard, Page
from coordinator.store.search import LaneEntry, LanePage
from tpf.dynamodb import ConditionFailed, Items, conditions, deserialize, serialize
from tpf.errors import AlreadyExists, NotFound, StaleRecord
from tpf.records import (
    CREATED_AT,
    DUE_AT,
    DUE_INDEX,
    DUE_SHARD,
    SEARCH_INDEX,
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

# Expression attribute names for every attribute a condition mentions (some are reserved words).
_NAMES = {
    "#pk": "pk",
    "#v": "v",
    "#st": "st",
    "#tk": "tk",
    "#dt": DUE_AT,
    "#wk": WAKE_AT,
    "#ds": DUE_SHARD,
    "#au": "au",
    "#p": "p",
    "#sl": SEARCH_LANE,
    "#ca": CREATED_AT,
}
BATCH_GET = 100
"""Keys per BatchGetItem, DynamoDB's maximum."""


def condition_for(guard: Guard) -> tuple[str, dict[str, Any]]:
    """The condition expression of a guard, one named clause per part."""
    clauses = {
        "record exists": "attribute_exists(#pk)",
        "fencing token": "#v = :v",
        "allowed states": "#st IN ({})".format(
            ", ".join(f":st{i}" for i in range(len(guard.statuses)))
        ),
    }
    values: dict[str, Any] = {":v": guard.version}
    values.update({f":st{i}": s.value for i, s in enumerate(sorted(guard.statuses))})
    if guard.transition_key is not None:
        clauses["same transition"] = "#tk = :tk"
        values[":tk"] = guard.transition_key
    if guard.due_by_ms is not None:
        clauses["deadline passed"] = "#dt <= :due"
        values[":due"] = guard.due_by_ms
    if guard.await_unit_id is not None:
        clauses["same await unit"] = "#au = :au"
        values[":au"] = guard.await_unit_id
    return " AND ".join(clauses.values()), serialize(values)


def _names_in(expression: str) -> dict[str, str]:
    used = set(re.findall(r"#\w+", expression))
    return {k: v for k, v in _NAMES.items() if k in used}


class DynamoExecutionTable:
    def __init__(self, client: Any, table_name: str, *, shards: int) -> None:
        self.client = client
        self.table_name = table_name
        self.shards = shards

    async def insert(self, record: ExecutionRecord) -> None:
        try:
            with conditions():
                await self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize(to_item(record, shards=self.shards)),
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": "pk"},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed as exc:
            current = from_item(exc.item) if exc.item else None
            raise AlreadyExists("execution exists", current=current) from exc

    async def replace(self, record: ExecutionRecord, guard: Guard) -> None:
        expression, values = condition_for(guard)
        try:
            with conditions():
                await self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize(to_item(record, shards=self.shards)),
                    ConditionExpression=expression,
                    ExpressionAttributeNames=_names_in(expression),
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed as exc:
            if exc.item is None:
                raise NotFound(f"no execution {record.execution_id}") from exc
            raise StaleRecord("execution changed", current=from_item(exc.item)) from exc

    async def renew(
        self, tenant_id: str, execution_id: str, *, transition_key: str, due_at_ms: int
    ) -> None:
        expression = "#st IN (:running, :waiting) AND #tk = :tk AND #dt < :dt"
        try:
            with conditions():
                await self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize({"pk": partition_key(tenant_id, execution_id)}),
                    UpdateExpression="SET #dt = :dt",
                    ConditionExpression=expression,
                    ExpressionAttributeNames=_names_in(expression),
                    ExpressionAttributeValues=serialize(
                        {
                            ":running": Status.RUNNING.value,
                            ":waiting": Status.WAIT_RETRY.value,
                            ":tk": transition_key,
                            ":dt": due_at_ms,
                        }
                    ),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed as exc:
            if exc.item is None:
                raise NotFound(f"no execution {execution_id}") from exc
            current = from_item(exc.item)
            raise StaleRecord("transition no longer running", current=current) from exc

    async def get(
        self, tenant_id: str, execution_id: str, *, consistent: bool = True
    ) -> ExecutionRecord | None:
        response = await self.client.get_item(
            TableName=self.table_name,
            Key=serialize({"pk": partition_key(tenant_id, execution_id)}),
            ConsistentRead=consistent,
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        return from_item(deserialize(item)) if item else None

    async def due(self, shard: str, *, now_ms: int, limit: int) -> list[DueEntry]:
        response = await self.client.query(
            TableName=self.table_name,
            IndexName=DUE_INDEX,
            KeyConditionExpression="#ds = :shard AND #wk <= :now",
            ExpressionAttributeNames={"#ds": DUE_SHARD, "#wk": WAKE_AT},
            ExpressionAttributeValues=serialize({":shard": shard, ":now": now_ms}),
            Limit=limit,
            ReturnConsumedCapacity="INDEXES",
        )
        return [due_entry(deserialize(item)) for item in response.get("Items", [])]

    async def rewake(self, record: ExecutionRecord, *, drop: bool = False) -> bool:
        # An update, not a put: a heartbeat's new deadline (same version) must survive it.
        values: dict[str, Any] = {}
        if record.wake_at_ms is None:
            seen = "attribute_not_exists(#wk)"
        else:
            seen, values[":seen"] = "#wk = :seen", record.wake_at_ms
        if drop:
            expression = f"{seen} AND #st = :waiting AND #au = :au"
            values.update({":waiting": Status.WAITING_EXTERNAL.value, ":au": record.await_unit_id})
            update = "REMOVE #wk, #ds"
        else:
            expression = f"{seen} AND attribute_exists(#dt)"
            values[":ds"] = due_shard(record.execution_id, self.shards)
            update = "SET #wk = #dt, #ds = :ds"
        try:
            with conditions():
                await self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize({"pk": partition_key(record.tenant_id, record.execution_id)}),
                    UpdateExpression=update,
                    ConditionExpression=expression,
                    ExpressionAttributeNames=_names_in(f"{expression} {update}"),
                    ExpressionAttributeValues=serialize(values),
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed:
            return False
        return True

    async def lane(
        self, lane: str, *, since_ms: int, until_ms: int, after: LaneEntry | None, limit: int
    ) -> LanePage:
        expression = "#sl = :lane AND #ca BETWEEN :since AND :last"
        start: dict[str, Any] = {}
        if after is not None:
            tenant_id = lane.rpartition("#")[0]
            key = {
                SEARCH_LANE: lane,
                CREATED_AT: after.created_at_ms,
                "pk": partition_key(tenant_id, after.execution_id),
            }
            start["ExclusiveStartKey"] = serialize(key)
        response = await self.client.query(
            TableName=self.table_name,
            IndexName=SEARCH_INDEX,
            KeyConditionExpression=expression,
            ExpressionAttributeNames=_names_in(expression),
            ExpressionAttributeValues=serialize(
                {":lane": lane, ":since": since_ms, ":last": until_ms - 1}
            ),
            ScanIndexForward=False,  # newest first
            Limit=limit,
            ReturnConsumedCapacity="INDEXES",
            **start,
        )
        items = [deserialize(i) for i in response.get("Items", [])]
        entries = [LaneEntry(int(i[CREATED_AT]), str(i["pk"]).partition("#")[2]) for i in items]
        return LanePage(entries, more="LastEvaluatedKey" in response)

    async def get_many(self, tenant_id: str, execution_ids: Sequence[str]) -> list[ExecutionRecord]:
        items = Items(self.client, self.table_name)
        found: dict[str, ExecutionRecord] = {}
        for first in range(0, len(execution_ids), BATCH_GET):
            chunk = execution_ids[first : first + BATCH_GET]
            keys = [{"pk": partition_key(tenant_id, e)} for e in chunk]
            for item in await items.get_many(keys):
                record = from_item(item)
                found[record.execution_id] = record
        return [found[e] for e in execution_ids if e in found]

    async def add_search_keys(self, record: ExecutionRecord) -> bool:
        # Only the lane is set, so a deadline renewed meanwhile (same version) is kept; the lane
        # follows the status, so the status must still be the one it was computed from.
        expression = "attribute_exists(#pk) AND #st = :st AND attribute_not_exists(#sl)"
        try:
            with conditions():
                await self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize({"pk": partition_key(record.tenant_id, record.execution_id)}),
                    UpdateExpression="SET #sl = :lane",
                    ConditionExpression=expression,
                    ExpressionAttributeNames=_names_in(expression),
                    ExpressionAttributeValues=serialize(
                        {
                            ":st": record.status.value,
                            ":lane": search_lane(record.tenant_id, record.status),
                        }
                    ),
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed:
            return False
        return True

    async def page(
        self,
        *,
        statuses: Iterable[Status] | None = None,
        pipeline_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Limit": limit,
            "ReturnConsumedCapacity": "TOTAL",
        }
        filters, values = [], {}
        if statuses:
            wanted = sorted({s.value for s in statuses})
            filters.append("#st IN ({})".format(", ".join(f":s{i}" for i in range(len(wanted)))))
            values.update({f":s{i}": s for i, s in enumerate(wanted)})
        if pipeline_id:
            filters.append("#p = :p")
            values[":p"] = pipeline_id
        if filters:
            expression = " AND ".join(filters)
            kwargs.update(
                FilterExpression=expression,
                ExpressionAttributeNames=_names_in(expression),
                ExpressionAttributeValues=serialize(values),
            )
        if cursor:
            kwargs["ExclusiveStartKey"] = serialize({"pk": json.loads(cursor)})
        response = await self.client.scan(**kwargs)
        last = response.get("LastEvaluatedKey")
        return Page(
            [from_item(deserialize(item)) for item in response.get("Items", [])],
            json.dumps(deserialize(last)["pk"]) if last else None,
        )
