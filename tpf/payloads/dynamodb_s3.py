"""Payload backend on AWS: write-once items in DynamoDB, objects in S3."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from tpf.dynamodb import ConditionFailed, conditions
from tpf.payloads import PayloadStore
from tpf.retention import EXECUTION_TTL
from tpf.settings import Settings
from tpf.substrate import AwsClients


class DynamoS3PayloadBackend:
    """Payload items in DynamoDB (write-once), objects in S3."""

    def __init__(self, dynamodb: Any, s3: Any, *, table: str, bucket: str, ttl_s: int) -> None:
        self.dynamodb, self.s3 = dynamodb, s3
        self.table, self.bucket, self.ttl_s = table, bucket, ttl_s

    async def write_item(self, key: str, data: bytes) -> None:
        try:
            with conditions():
                await self.dynamodb.put_item(
                    TableName=self.table,
                    Item={
                        "pk": {"S": key},
                        "b": {"B": data},
                        "ttl": {"N": str(int(time.time()) + self.ttl_s)},
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnConsumedCapacity="TOTAL",
                )
        except ConditionFailed:
            pass  # content-addressed: an existing item already holds these very bytes

    async def read_item(self, key: str) -> bytes | None:
        response = await self.dynamodb.get_item(
            TableName=self.table,
            Key={"pk": {"S": key}},
            ConsistentRead=True,  # written just before the message that names it was sent
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        return bytes(item["b"]["B"]) if item else None

    async def write_object(self, key: str, data: bytes) -> None:
        await self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def read_object(self, key: str) -> bytes | None:
        try:
            response = await self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data


def payload_store(settings: Settings, aws: AwsClients) -> PayloadStore:
    """The stack's payload store: its payloads table and bucket."""
    return PayloadStore(
        DynamoS3PayloadBackend(
            aws.dynamodb,
            aws.s3,
            table=settings.resource("payloads"),
            bucket=settings.resource("payloads"),
            ttl_s=int(EXECUTION_TTL.total_seconds()),
        )
    )
