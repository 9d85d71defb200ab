"""The one edge between our adapters and DynamoDB's wire: attribute values, errors, paging.

Every adapter that writes items of its own goes through here, so DynamoDB's error codes are
read in one place: a failed condition becomes ``ConditionFailed`` (with the current item when
the write asked for it), a cancelled transaction becomes ``TransactionCancelled`` with one
reason per action, and nothing above the adapters ever sees a ``ClientError`` for either.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

CONFLICT_RETRIES = 8
"""How often a transaction that lost a race to another writer is tried again."""
BATCH_RETRIES = 6
"""How often unprocessed batch items are sent again, with backoff, before giving up."""


class ConditionFailed(Exception):
    """A conditional write found the item otherwise; ``item`` is what it found, when asked."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("the condition did not hold")
        self.item = item


class TransactionCancelled(Exception):
    """A transaction was refused; ``reasons`` has one code per action ("None" for those fine)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons

    @property
    def conflicted(self) -> bool:
        """Another writer raced us: worth trying again, unlike a condition that failed."""
        return not self.reasons or "TransactionConflict" in self.reasons


class StillContended(Exception):
    """A transaction kept losing races after ``CONFLICT_RETRIES`` tries."""


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: serialize_value(v) for k, v in item.items()}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: deserialize_value(v) for k, v in item.items()}


# Strings and integers are most of every item. boto3's (de)serializer takes a dozen type checks
# and a decimal context to each; these take one, and hand everything else to it.
_LARGEST_EXACT = 10**38
"""DynamoDB numbers hold 38 significant digits; boto3 refuses larger integers, so do we."""


def serialize_value(value: Any) -> dict[str, Any]:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int and -_LARGEST_EXACT < value < _LARGEST_EXACT:
        return {"N": str(value)}
    result: dict[str, Any] = _serializer.serialize(value)
    return result


def deserialize_value(value: dict[str, Any]) -> Any:
    if len(value) == 1:
        if (text := value.get("S")) is not None:
            return text
        if (number := value.get("N")) is not None:
            return DYNAMODB_CONTEXT.create_decimal(number)
    return _deserializer.deserialize(value)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a client error, None for anything else."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None


@contextmanager
def conditions() -> Iterator[None]:
    """Translate DynamoDB's refusals of conditional writes into our two exceptions."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code == "ConditionalCheckFailedException":
            item = exc.response.get("Item")
            raise ConditionFailed(deserialize(item) if item else None) from exc
        if code == "TransactionCanceledException":
            reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
            raise TransactionCancelled(reasons) from exc
        raise


async def transact(client: Any, actions: list[dict[str, Any]]) -> None:
    """One ``TransactWriteItems``, tried again with jitter while it only lost races.

    Raises ``TransactionCancelled`` when a condition refused it, ``StillContended`` when the
    races never stopped.
    """
    for attempt in range(CONFLICT_RETRIES):
        try:
            with conditions():
                await client.transact_write_items(
                    TransactItems=actions, ReturnConsumedCapacity="INDEXES"
                )
            return
        except TransactionCancelled as cancelled:
            if not cancelled.conflicted:
                raise
        await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
    raise StillContended(f"{len(actions)} actions kept conflicting")


class Items:
    """Reads and batch writes on one table, paging and retrying unprocessed items."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client, self.table_name = client, table_name

    async def get(
        self, key: dict[str, Any], *, attributes: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """One strongly consistent GetItem, of only ``attributes`` when named."""
        projection: dict[str, Any] = {}
        if attributes:
            names = {f"#a{i}": name for i, name in enumerate(attributes)}
            projection = {
                "ProjectionExpression": ", ".join(names),
                "ExpressionAttributeNames": names,
            }
        response = await self.client.get_item(
            TableName=self.table_name,
            Key=serialize(key),
            ConsistentRead=True,
            ReturnConsumedCapacity="INDEXES",
            **projection,
        )
        item = response.get("Item")
        return deserialize(item) if item else None

    async def query(self, *, limit: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a Query (up to ``limit`` items), deserialized."""
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

    async def get_many(
        self, keys: list[dict[str, Any]], *, consistent: bool = True
    ) -> list[dict[str, Any]]:
        """One ``BatchGetItem`` of up to 100 keys, strongly consistent unless told otherwise,
        unprocessed ones again."""
        wanted = [serialize(k) for k in keys]
        found: list[dict[str, Any]] = []
        for attempt in range(BATCH_RETRIES):
            response = await self.client.batch_get_item(
                RequestItems={self.table_name: {"Keys": wanted, "ConsistentRead": consistent}},
                ReturnConsumedCapacity="INDEXES",
            )
            found.extend(deserialize(i) for i in response["Responses"].get(self.table_name, []))
            wanted = response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
            if not wanted:
                return found
            await asyncio.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"{len(wanted)} keys unprocessed after retries")

    async def put_many(self, items: list[dict[str, Any]]) -> None:
        """One ``BatchWriteItem`` of up to 25 puts, unprocessed ones sent again."""
        pending = [{"PutRequest": {"Item": serialize(i)}} for i in items]
        for attempt in range(BATCH_RETRIES):
            response = await self.client.batch_write_item(
                RequestItems={self.table_name: pending}, ReturnConsumedCapacity="INDEXES"
            )
            pending = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not pending:
                return
            await asyncio.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"{len(pending)} items unprocessed after retries")
