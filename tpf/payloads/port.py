"""The payload backend port: write-once items and objects by key.

``memory`` is its fake and ``dynamodb_s3`` its adapter (small payloads as DynamoDB items, large
ones as S3 objects); ``tpf.payloads.PayloadStore`` chooses the tier and checks digests above it.
"""

from __future__ import annotations

from typing import Protocol


class PayloadBackend(Protocol):
    async def write_item(self, key: str, data: bytes) -> None: ...
    async def read_item(self, key: str) -> bytes | None: ...
    async def write_object(self, key: str, data: bytes) -> None: ...
    async def read_object(self, key: str) -> bytes | None: ...
