"""The registry table on DynamoDB: GetItem and Query on one pipeline's partition, never a Scan."""

from __future__ import annotations

from typing import Any

from tpf.dynamodb import ConditionFailed, conditions


class DynamoRegistryTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client, self.table_name = client, table_name

    async def put_new(self, pk: str, sk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        item = {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": str(v)} for k, v in body.items()}}
        try:
            with conditions():
                await self.client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ReturnConsumedCapacity="TOTAL",
                )
        except ConditionFailed as exc:
            return (
                {k: v for k, v in exc.item.items() if isinstance(v, str)}
                if exc.item
                else await self.get(pk, sk)
            )
        return None

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = await self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        return _plain(item) if item else None

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        response = await self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": prefix}},
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return [_plain(item) for item in response.get("Items", [])]

    async def query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page: dict[str, Any] = {}
        while True:
            response = await self.client.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": prefix}},
                ConsistentRead=True,
                ReturnConsumedCapacity="TOTAL",
                **page,
            )
            found.extend(_plain(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return found
            page = {"ExclusiveStartKey": response["LastEvaluatedKey"]}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v["S"] for k, v in item.items() if "S" in v}
