"""Where the pipeline's files live: the uploaded CSV, its manifest, the output CSV.

A small port so the steps read the same in tests (``InMemoryFiles``) and in a worker
(``S3Files``, built from the worker's own settings). Steps call :func:`files`, which a test
may replace with :func:`use_files`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

from botocore.exceptions import ClientError

from tpf.errors import NonRetryable
from tpf.settings import Settings
from tpf.substrate import sync_client

_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404"})


class Files(Protocol):
    async def read(self, bucket: str, key: str, version_id: str | None) -> bytes:
        """The object's bytes; NonRetryable ``CSV_MISSING`` when it is not there."""

    async def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...

    def bucket(self, name: str) -> str:
        """The physical name of one of the stack's buckets (``outbox``, ``payloads``)."""


class S3Files:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = sync_client(self.settings, "s3")
            return self._client

    async def read(self, bucket: str, key: str, version_id: str | None) -> bytes:
        def get() -> bytes:
            extra = {"VersionId": version_id} if version_id and version_id != "null" else {}
            try:
                response = self._s3().get_object(Bucket=bucket, Key=key, **extra)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _MISSING:
                    raise  # an outage: the step is retried
                raise NonRetryable(
                    f"s3://{bucket}/{key} does not exist (deleted after upload?)",
                    error_code="CSV_MISSING",
                ) from None
            return bytes(response["Body"].read())

        return await asyncio.to_thread(get)

    async def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            lambda: self._s3().put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )
        )

    def bucket(self, name: str) -> str:
        return self.settings.resource(name)


class InMemoryFiles:
    def __init__(self, stack: str = "tpf") -> None:
        self.stack = stack
        self.objects: dict[tuple[str, str], bytes] = {}

    async def read(self, bucket: str, key: str, version_id: str | None) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise NonRetryable(
                f"s3://{bucket}/{key} does not exist", error_code="CSV_MISSING"
            ) from None

    async def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = data

    def bucket(self, name: str) -> str:
        return f"{self.stack}-{name}"


_current: Files | None = None


def files() -> Files:
    global _current
    if _current is None:
        _current = S3Files(Settings())
    return _current


def use_files(replacement: Files | None) -> None:
    global _current
    _current = replacement
