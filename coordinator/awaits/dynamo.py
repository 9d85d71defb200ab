"""The awaits table on DynamoDB. See ``coordinator.awaits.model`` for the item layout.

Every write that counts is a transaction with conditions, so replicas racing on one unit never
double a count: ``record`` puts up to 99 flipped interactions and the unit's ``ADD done :k`` in
one ``TransactWriteItems``; when some interactions were no longer PENDING, the cancellation
reasons name them, and the rest is written again without them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from coordinator.awaits.model import (
    ADMISSION_SK,
    UNIT_SK,
    AwaitUnit,
    Interaction,
    InteractionStatus,
    UnitStatus,
    admission_pk,
    interaction_from_item,
    interaction_sk,
    interaction_to_item,
    sweep_position,
    unit_from_item,
    unit_pk,
    unit_to_item,
)
from coordinator.awaits.tables import Key
from tpf.dynamodb import deserialize, serialize
from tpf.errors import StaleRecord

TRANSACTION_ITEMS = 100
"""DynamoDB's limit on the actions of one TransactWriteItems."""
BATCH_GET = 100
BATCH_WRITE = 25
WRITE_CONCURRENCY = 8
"""BatchWriteItem calls in flight while a large unit is created."""
CONFLICT_RETRIES = 8


class DynamoAwaitTable:
    def __init__(self, client: Any, table_name: str, *, shards: int = 4) -> None:
        self.client, self.table_name, self.shards = client, table_name, shards

    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        if await self.get_unit(unit.tenant_id, unit.unit_id) is not None:
            return False
        chunks = [
            interactions[start : start + BATCH_WRITE]
            for start in range(0, len(interactions), BATCH_WRITE)
        ]
        limit = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def write(chunk: list[Interaction]) -> None:
            async with limit:
                await self._batch_write(
                    [{"PutRequest": {"Item": serialize(interaction_to_item(i))}} for i in chunk]
                )

        await asyncio.gather(*(write(chunk) for chunk in chunks))
        try:
            await self.client.put_item(
                TableName=self.table_name,
                Item=serialize(unit_to_item(unit, self.shards)),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnConsumedCapacity="INDEXES",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    async def get_unit(self, tenant_id: str, unit_id: str) -> AwaitUnit | None:
        item = await self._get(unit_pk(tenant_id, unit_id), UNIT_SK)
        return unit_from_item(item) if item else None

    async def get_interaction(
        self, tenant_id: str, unit_id: str, item_index: int
    ) -> Interaction | None:
        item = await self._get(unit_pk(tenant_id, unit_id), interaction_sk(item_index))
        return interaction_from_item(item) if item else None

    async def get_interactions(self, keys: Sequence[Key]) -> dict[Key, Interaction]:
        found: dict[Key, Interaction] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_GET):
            wanted = [
                {"pk": {"S": unit_pk(t, u)}, "sk": {"S": interaction_sk(n)}}
                for t, u, n in unique[start : start + BATCH_GET]
            ]
            for attempt in range(6):
                response = await self.client.batch_get_item(
                    RequestItems={self.table_name: {"Keys": wanted, "ConsistentRead": True}},
                    ReturnConsumedCapacity="INDEXES",
                )
                for item in response["Responses"].get(self.table_name, []):
                    interaction = interaction_from_item(deserialize(item))
                    found[(interaction.tenant_id, interaction.unit_id, interaction.item_index)] = (
                        interaction
                    )
                wanted = (
                    response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
                )
                if not wanted:
                    break
                await asyncio.sleep(0.05 * 2**attempt)
        return found

    async def by_correlation(self, correlation_id: str) -> Key | None:
        response = await self.client.query(
            TableName=self.table_name,
            IndexName="correlation",
            KeyConditionExpression="cid = :cid",
            ExpressionAttributeValues={":cid": {"S": correlation_id}},
            Limit=1,
            ReturnConsumedCapacity="INDEXES",
        )
        if not response["Items"]:
            return None
        item = response["Items"][0]
        tenant_id, _, unit_id = item["pk"]["S"].partition("#")
        return tenant_id, unit_id, int(item["sk"]["S"].removeprefix("I#"))

    async def interactions(
        self, tenant_id: str, unit_id: str, *, start: int = 0, stop: int | None = None
    ) -> list[Interaction]:
        last = interaction_sk(stop - 1) if stop is not None else "I#~"
        if stop is not None and stop <= start:
            return []
        items = await self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": {"S": unit_pk(tenant_id, unit_id)},
                ":first": {"S": interaction_sk(start)},
                ":last": {"S": last},
            },
            ConsistentRead=True,
        )
        return [interaction_from_item(i) for i in items]

    async def pending(self, tenant_id: str, *, limit: int) -> list[Interaction]:
        items = await self._query(
            IndexName="pending",
            KeyConditionExpression="pp = :pp",
            ExpressionAttributeValues={":pp": {"S": f"T#{tenant_id}"}},
            limit=limit,
        )
        return [interaction_from_item(i) for i in items]

    # -- counting -----------------------------------------------------------------------------

    async def record(self, completed: Sequence[Interaction]) -> list[Interaction]:
        recorded: list[Interaction] = []
        step = TRANSACTION_ITEMS - 1  # one action is the unit's counter
        for start in range(0, len(completed), step):
            recorded.extend(await self._record_chunk(list(completed[start : start + step])))
        return recorded

    async def _record_chunk(self, chunk: list[Interaction]) -> list[Interaction]:
        attempts = 0
        while chunk:
            first = chunk[0]
            unit_key = serialize({"pk": unit_pk(first.tenant_id, first.unit_id), "sk": UNIT_SK})
            flips = [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": serialize(interaction_to_item(i)),
                        "ConditionExpression": "#st = :pending",
                        "ExpressionAttributeNames": {"#st": "st"},
                        "ExpressionAttributeValues": serialize({":pending": "PENDING"}),
                    }
                }
                for i in chunk
            ]
            count = {
                "Update": {
                    "TableName": self.table_name,
                    "Key": unit_key,
                    "UpdateExpression": "ADD #d :k",
                    "ConditionExpression": "#st = :open",
                    "ExpressionAttributeNames": {"#d": "d", "#st": "st"},
                    "ExpressionAttributeValues": serialize({":k": len(chunk), ":open": "OPEN"}),
                }
            }
            try:
                await self.client.transact_write_items(
                    TransactItems=[*flips, count], ReturnConsumedCapacity="INDEXES"
                )
                return chunk
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
            if "TransactionConflict" in reasons or not reasons:
                attempts += 1
                if attempts > CONFLICT_RETRIES:
                    raise StaleRecord("the unit stayed contended")
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempts))
                continue
            if reasons[-1] == "ConditionalCheckFailed":
                return []  # the unit closed: nothing of it counts any more
            chunk = [i for i, code in zip(chunk, reasons, strict=False) if code == "None"]
        return []

    async def advance(self, unit: AwaitUnit, moved: AwaitUnit, *, tenant_limit: int) -> bool:
        delta = moved.accounted - unit.accounted
        if delta > tenant_limit:
            return False
        values: dict[str, Any] = {
            ":open": "OPEN",
            ":was_pub": unit.published,
            ":was_acc": unit.accounted,
            ":pub": moved.published,
            ":acc": moved.accounted,
            ":ps": sweep_position(moved),
        }
        expression = "SET pub = :pub, acc = :acc, ps = :ps"
        if moved.wake_ms is None:
            expression += " REMOVE wk"
        else:
            expression += ", wk = :wk"
            values[":wk"] = moved.wake_ms
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": serialize({"pk": unit_pk(unit.tenant_id, unit.unit_id), "sk": UNIT_SK}),
                    "UpdateExpression": expression,
                    "ConditionExpression": "#st = :open AND pub = :was_pub AND acc = :was_acc",
                    "ExpressionAttributeNames": {"#st": "st"},
                    "ExpressionAttributeValues": serialize(values),
                }
            }
        ]
        if delta:
            actions.append(self._tenant_update(unit.tenant_id, delta, tenant_limit))
        reasons = await self._write(actions)
        if not reasons:
            return True
        if reasons[0] == "ConditionalCheckFailed":
            raise StaleRecord("the unit moved on")
        return False  # the tenant's counter refused

    async def tenant_in_flight(self, tenant_id: str) -> int:
        item = await self._get(admission_pk(tenant_id), ADMISSION_SK)
        return int(item.get("f", 0)) if item else 0

    async def close_unit(
        self, tenant_id: str, unit_id: str, status: UnitStatus
    ) -> AwaitUnit | None:
        for _ in range(CONFLICT_RETRIES):
            unit = await self.get_unit(tenant_id, unit_id)
            if unit is None or unit.status is not UnitStatus.OPEN:
                return None
            actions: list[dict[str, Any]] = [
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": serialize({"pk": unit_pk(tenant_id, unit_id), "sk": UNIT_SK}),
                        "UpdateExpression": "SET #st = :st, acc = :zero REMOVE pp, ps, wk",
                        "ConditionExpression": "#st = :open AND acc = :acc",
                        "ExpressionAttributeNames": {"#st": "st"},
                        "ExpressionAttributeValues": serialize(
                            {
                                ":st": status.value,
                                ":zero": 0,
                                ":open": "OPEN",
                                ":acc": unit.accounted,
                            }
                        ),
                    }
                }
            ]
            if unit.accounted:
                actions.append(self._tenant_update(tenant_id, -unit.accounted, None))
            if not await self._write(actions):
                return replace(unit, status=status, accounted=0, wake_ms=None)
        raise StaleRecord("the unit kept changing while closing")

    async def expire(self, interactions: list[Interaction]) -> None:
        async def one(i: Interaction) -> None:
            try:
                await self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize(
                        {"pk": unit_pk(i.tenant_id, i.unit_id), "sk": interaction_sk(i.item_index)}
                    ),
                    UpdateExpression="SET #st = :out REMOVE pp, ps",
                    ConditionExpression="#st = :pending",
                    ExpressionAttributeNames={"#st": "st"},
                    ExpressionAttributeValues=serialize(
                        {":out": "TIMED_OUT", ":pending": "PENDING"}
                    ),
                    ReturnConsumedCapacity="INDEXES",
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise

        pending = [i for i in interactions if i.status is InteractionStatus.PENDING]
        for start in range(0, len(pending), BATCH_WRITE):
            await asyncio.gather(*(one(i) for i in pending[start : start + BATCH_WRITE]))

    async def overdue(self, shard: str, *, now_ms: int, limit: int) -> list[tuple[str, str]]:
        items = await self._query(
            IndexName="pending",
            KeyConditionExpression="pp = :pp AND ps <= :now",
            ExpressionAttributeValues={
                ":pp": {"S": f"D#{shard}"},
                ":now": {"S": f"{now_ms:013d}~"},
            },
            limit=limit,
        )
        found = []
        for item in items:
            _, tenant_id, unit_id = item["ps"].split("#", 2)
            found.append((tenant_id, unit_id))
        return found

    # -- helpers ----------------------------------------------------------------------------

    def _tenant_update(self, tenant_id: str, delta: int, limit: int | None) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": serialize({"pk": admission_pk(tenant_id), "sk": ADMISSION_SK}),
            "UpdateExpression": "ADD f :delta",
            "ExpressionAttributeValues": serialize({":delta": delta}),
        }
        if limit is not None and delta > 0:
            # Conditions cannot add: "f + delta <= limit" is "f <= limit - delta".
            update["ConditionExpression"] = "attribute_not_exists(f) OR f <= :room"
            update["ExpressionAttributeValues"] = serialize(
                {":delta": delta, ":room": limit - delta}
            )
        return {"Update": update}

    async def _write(self, actions: list[dict[str, Any]]) -> list[str]:
        """``_transact``, or one conditional UpdateItem (half the WRU) when there is one action."""
        if len(actions) > 1:
            return await self._transact(actions)
        update = dict(actions[0]["Update"])
        try:
            await self.client.update_item(**update, ReturnConsumedCapacity="INDEXES")
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return ["ConditionalCheckFailed"]
        return []

    async def _transact(self, actions: list[dict[str, Any]]) -> list[str]:
        """[] when written; else the cancellation reason of each action (conflicts retried)."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                await self.client.transact_write_items(
                    TransactItems=actions, ReturnConsumedCapacity="INDEXES"
                )
                return []
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
            if reasons and "TransactionConflict" not in reasons:
                return reasons
            await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise StaleRecord("the unit stayed contended")

    async def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = await self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
            ReturnConsumedCapacity="INDEXES",
        )
        item = response.get("Item")
        return deserialize(item) if item else None

    async def _query(self, *, limit: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while limit is None or len(found) < limit:
            page = {"ExclusiveStartKey": start} if start else {}
            response = await self.client.query(
                TableName=self.table_name, ReturnConsumedCapacity="INDEXES", **kwargs, **page
            )
            found.extend(deserialize(i) for i in response["Items"])
            start = response.get("LastEvaluatedKey")
            if start is None:
                break
        return found[:limit] if limit is not None else found

    async def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = requests
        for attempt in range(6):
            response = await self.client.batch_write_item(
                RequestItems={self.table_name: pending}, ReturnConsumedCapacity="INDEXES"
            )
            pending = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not pending:
                return
            await asyncio.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"{len(pending)} await items unprocessed after retries")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
