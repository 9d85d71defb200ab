"""Worker items in the registry table, over an aioboto3 DynamoDB client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coordinator.workers.port import Item, Value, no_lambda_heartbeat, unknown_worker
from tpf.dynamodb import ConditionFailed, conditions
from tpf.registry.worker_items import DRAIN_ATTRIBUTE, WORKER_PREFIX


class DynamoWorkerTable:
    """Worker items over an aioboto3 DynamoDB client."""

    def __init__(self, client: Any, table_name: str, *, page_size: int | None = None) -> None:
        self.client, self.table_name, self.page_size = client, table_name, page_size

    async def put(
        self, pk: str, sk: str, fields: Mapping[str, Value], *, registered_at_ms: int
    ) -> Item:
        names = {"#ra": "ra"}
        values: dict[str, Any] = {":ra": _attr(registered_at_ms)}
        sets, removes = ["#ra = if_not_exists(#ra, :ra)"], []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name  # attribute names such as ttl are reserved words
            if value is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :f{i}")
                values[f":f{i}"] = _attr(value)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        response = await self.client.update_item(
            TableName=self.table_name,
            Key=_key(pk, sk),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            ReturnConsumedCapacity="TOTAL",
        )
        return _plain(response["Attributes"])

    async def heartbeat(self, pk: str, sk: str, *, at_ms: int, expires_at_s: int) -> Item:
        exists = "attribute_exists(pk)"
        heartbeats = "NOT #kd = :lambda"  # Lambda workers are healthy by their mapping instead
        return await self._update_existing(
            pk,
            sk,
            "SET #hb = :hb, #ttl = :ttl",
            condition=f"{exists} AND {heartbeats}",
            names={"#hb": "hb", "#ttl": "ttl", "#kd": "kd"},
            values={":hb": _attr(at_ms), ":ttl": _attr(expires_at_s), ":lambda": _attr("lambda")},
        )

    async def request_drain(self, pk: str, sk: str, *, at_ms: int) -> Item:
        return await self._update_existing(
            pk,
            sk,
            "SET #dr = if_not_exists(#dr, :dr)",
            condition="attribute_exists(pk)",
            names={"#dr": DRAIN_ATTRIBUTE},
            values={":dr": _attr(at_ms)},
        )

    async def _update_existing(
        self,
        pk: str,
        sk: str,
        expression: str,
        *,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> Item:

        try:
            with conditions():
                response = await self.client.update_item(
                    TableName=self.table_name,
                    Key=_key(pk, sk),
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ReturnConsumedCapacity="TOTAL",
                )
        except ConditionFailed as exc:
            if exc.item is None and await self.get(pk, sk) is None:
                raise unknown_worker(pk, sk) from exc
            # Only the heartbeat has a second clause: the item is a Lambda worker's.
            raise no_lambda_heartbeat(pk, sk) from exc
        return _plain(response["Attributes"])

    async def get(self, pk: str, sk: str) -> Item | None:
        response = await self.client.get_item(
            TableName=self.table_name,
            Key=_key(pk, sk),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        return _plain(item) if item else None

    async def query(self, pk: str) -> list[Item]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _attr(pk), ":prefix": _attr(WORKER_PREFIX)},
            "ConsistentRead": True,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if self.page_size is not None:
            request["Limit"] = self.page_size
        items: list[Item] = []
        while True:
            response = await self.client.query(**request)
            items.extend(_plain(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _attr(value: str | int) -> dict[str, str]:
    return {"N": str(value)} if isinstance(value, int) else {"S": value}


def _plain(item: Mapping[str, Any]) -> Item:
    plain: Item = {}
    for name, value in item.items():
        if "S" in value:
            plain[name] = value["S"]
        elif "N" in value:
            plain[name] = int(value["N"])
    return plain
