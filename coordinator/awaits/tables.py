"""The awaits table port, its in-memory fake and its DynamoDB adapter.

Recording a completion is one ``TransactWriteItems``: the interaction flips PENDING→COMPLETED
under a condition and the unit's ``done`` counter grows in the same transaction, so a count is
never lost or doubled, and the unit item never holds a set of completed keys (400 KB cap).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Protocol

from coordinator.awaits.model import (
    UNIT_SK,
    AwaitUnit,
    Interaction,
    InteractionStatus,
    UnitStatus,
    deadline_shard,
    interaction_from_item,
    interaction_sk,
    interaction_to_item,
    unit_from_item,
    unit_pk,
    unit_to_item,
)
from tpf.errors import StaleRecord

Key = tuple[str, str, int]
"""(tenant, unit id, item index) of an interaction."""


class AwaitTable(Protocol):
    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        """Interactions, then the unit if absent; False when the unit already existed."""

    async def get_unit(self, tenant_id: str, unit_id: str) -> AwaitUnit | None: ...

    async def get_interaction(
        self, tenant_id: str, unit_id: str, item_index: int
    ) -> Interaction | None: ...

    async def by_correlation(self, correlation_id: str) -> Key | None: ...

    async def interactions(self, tenant_id: str, unit_id: str) -> list[Interaction]: ...

    async def pending(self, tenant_id: str, *, limit: int) -> list[Interaction]:
        """PENDING interactions of a tenant, oldest first."""

    async def record(self, completed: Interaction) -> None:
        """PENDING→COMPLETED and the unit's counter +1, atomically; StaleRecord otherwise."""

    async def update_unit(self, unit: AwaitUnit, *, expect: UnitStatus) -> None:
        """Overwrite the unit's status/published flag if it is still ``expect``."""

    async def expire(self, interactions: list[Interaction]) -> None:
        """PENDING→TIMED_OUT (out of the inbox)."""

    async def overdue(self, shard: str, *, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """(tenant, unit id) of open units whose deadline has passed."""


class InMemoryAwaitTable:
    def __init__(self, *, shards: int = 4) -> None:
        self.shards = shards
        self.units: dict[tuple[str, str], AwaitUnit] = {}
        self.items: dict[Key, Interaction] = {}
        self.lock = asyncio.Lock()

    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        async with self.lock:
            if (unit.tenant_id, unit.unit_id) in self.units:
                return False
            for i in interactions:
                self.items[(i.tenant_id, i.unit_id, i.item_index)] = i
            self.units[(unit.tenant_id, unit.unit_id)] = unit
            return True

    async def get_unit(self, tenant_id: str, unit_id: str) -> AwaitUnit | None:
        return self.units.get((tenant_id, unit_id))

    async def get_interaction(
        self, tenant_id: str, unit_id: str, item_index: int
    ) -> Interaction | None:
        return self.items.get((tenant_id, unit_id, item_index))

    async def by_correlation(self, correlation_id: str) -> Key | None:
        return next((k for k, i in self.items.items() if i.correlation_id == correlation_id), None)

    async def interactions(self, tenant_id: str, unit_id: str) -> list[Interaction]:
        found = [i for (t, u, _), i in self.items.items() if (t, u) == (tenant_id, unit_id)]
        return sorted(found, key=lambda i: i.item_index)

    async def pending(self, tenant_id: str, *, limit: int) -> list[Interaction]:
        found = [
            i
            for i in self.items.values()
            if i.tenant_id == tenant_id and i.status is InteractionStatus.PENDING
        ]
        return sorted(found, key=lambda i: (i.created_at_ms, i.interaction_id))[:limit]

    async def record(self, completed: Interaction) -> None:
        async with self.lock:
            key = (completed.tenant_id, completed.unit_id, completed.item_index)
            unit = self.units.get(key[:2])
            current = self.items.get(key)
            if (
                unit is None
                or unit.status is not UnitStatus.OPEN
                or current is None
                or current.status is not InteractionStatus.PENDING
            ):
                raise StaleRecord("the interaction or its unit is no longer open", current=current)
            self.items[key] = completed
            self.units[key[:2]] = replace(unit, done=unit.done + 1)

    async def update_unit(self, unit: AwaitUnit, *, expect: UnitStatus) -> None:
        async with self.lock:
            current = self.units.get((unit.tenant_id, unit.unit_id))
            if current is None or current.status is not expect:
                raise StaleRecord("the unit moved on", current=current)
            self.units[(unit.tenant_id, unit.unit_id)] = replace(
                current, status=unit.status, published=unit.published
            )

    async def expire(self, interactions: list[Interaction]) -> None:
        for i in interactions:
            key = (i.tenant_id, i.unit_id, i.item_index)
            if self.items[key].status is InteractionStatus.PENDING:
                self.items[key] = replace(i, status=InteractionStatus.TIMED_OUT)

    async def overdue(self, shard: str, *, now_ms: int, limit: int) -> list[tuple[str, str]]:
        found = [
            u
            for u in self.units.values()
            if u.status is UnitStatus.OPEN
            and u.deadline_ms <= now_ms
            and deadline_shard(u.unit_id, self.shards) == shard
        ]
        found.sort(key=lambda u: u.deadline_ms)
        return [(u.tenant_id, u.unit_id) for u in found[:limit]]


class DynamoAwaitTable:
    def __init__(self, client: Any, table_name: str, *, shards: int = 4) -> None:
        self.client, self.table_name, self.shards = client, table_name, shards

    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        from botocore.exceptions import ClientError

        from coordinator.store.dynamodb import serialize

        if await self.get_unit(unit.tenant_id, unit.unit_id) is not None:
            return False
        for start in range(0, len(interactions), 25):
            chunk = interactions[start : start + 25]
            requests = [{"PutRequest": {"Item": serialize(interaction_to_item(i))}} for i in chunk]
            await self._batch_write(requests)
        try:
            await self.client.put_item(
                TableName=self.table_name,
                Item=serialize(unit_to_item(unit, self.shards)),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
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

    async def by_correlation(self, correlation_id: str) -> Key | None:
        response = await self.client.query(
            TableName=self.table_name,
            IndexName="correlation",
            KeyConditionExpression="cid = :cid",
            ExpressionAttributeValues={":cid": {"S": correlation_id}},
            Limit=1,
            ReturnConsumedCapacity="TOTAL",
        )
        if not response["Items"]:
            return None
        item = response["Items"][0]
        tenant_id, _, unit_id = item["pk"]["S"].partition("#")
        return tenant_id, unit_id, int(item["sk"]["S"].removeprefix("I#"))

    async def interactions(self, tenant_id: str, unit_id: str) -> list[Interaction]:
        items = await self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :i)",
            ExpressionAttributeValues={
                ":pk": {"S": unit_pk(tenant_id, unit_id)},
                ":i": {"S": "I#"},
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

    async def record(self, completed: Interaction) -> None:
        from botocore.exceptions import ClientError

        from coordinator.store.dynamodb import serialize

        item = interaction_to_item(completed)
        try:
            await self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": serialize(item),
                            "ConditionExpression": "#st = :pending",
                            "ExpressionAttributeNames": {"#st": "st"},
                            "ExpressionAttributeValues": serialize({":pending": "PENDING"}),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": serialize({"pk": item["pk"], "sk": UNIT_SK}),
                            "UpdateExpression": "ADD #d :one",
                            "ConditionExpression": "#st = :open",
                            "ExpressionAttributeNames": {"#d": "d", "#st": "st"},
                            "ExpressionAttributeValues": serialize({":one": 1, ":open": "OPEN"}),
                        }
                    },
                ],
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raise StaleRecord("the interaction or its unit is no longer open") from exc

    async def update_unit(self, unit: AwaitUnit, *, expect: UnitStatus) -> None:
        from botocore.exceptions import ClientError

        from coordinator.store.dynamodb import serialize

        remove = "" if unit.status is UnitStatus.OPEN else " REMOVE pp, ps"
        try:
            await self.client.update_item(
                TableName=self.table_name,
                Key=serialize({"pk": unit_pk(unit.tenant_id, unit.unit_id), "sk": UNIT_SK}),
                UpdateExpression="SET #st = :st, pub = :pub" + remove,
                ConditionExpression="#st = :expect",
                ExpressionAttributeNames={"#st": "st"},
                ExpressionAttributeValues=serialize(
                    {":st": unit.status.value, ":pub": unit.published, ":expect": expect.value}
                ),
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise StaleRecord("the unit moved on") from exc

    async def expire(self, interactions: list[Interaction]) -> None:
        from botocore.exceptions import ClientError

        from coordinator.store.dynamodb import serialize

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
                    ReturnConsumedCapacity="TOTAL",
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

        pending = [i for i in interactions if i.status is InteractionStatus.PENDING]
        for start in range(0, len(pending), 25):
            await asyncio.gather(*(one(i) for i in pending[start : start + 25]))

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

    async def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        from coordinator.store.dynamodb import deserialize

        response = await self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        return deserialize(item) if item else None

    async def _query(self, *, limit: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        from coordinator.store.dynamodb import deserialize

        found: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while limit is None or len(found) < limit:
            page = {"ExclusiveStartKey": start} if start else {}
            response = await self.client.query(
                TableName=self.table_name, ReturnConsumedCapacity="TOTAL", **kwargs, **page
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
                RequestItems={self.table_name: pending}, ReturnConsumedCapacity="TOTAL"
            )
            pending = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not pending:
                return
            await asyncio.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"{len(pending)} await items unprocessed after retries")
