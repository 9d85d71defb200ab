"""Where the pipeline's files live: the uploaded CSV, its manifest, the output CSV.

A small port so the steps read the same in tests (``InMemoryFiles``) and in a worker
(``S3Files``, built from the worker's own settings). Steps call :func:`files`, which a test
may replace with :func:`use_files`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from typing import IO, Any, Protocol

from botocore.exceptions import ClientError

from tpf.errors import NonRetryable
from tpf.settings import Settings
from tpf.substrate import sync_client

CHUNK = 1 << 20
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404"})
_CHANGED = frozenset({"PreconditionFailed", "412"})


def _changed(bucket: str, key: str) -> NonRetryable:
    return NonRetryable(
        f"s3://{bucket}/{key} was overwritten after upload in a bucket that keeps no versions: "
        "the uploaded bytes are gone",
        error_code="CSV_CHANGED",
    )


def _missing(bucket: str, key: str) -> NonRetryable:
    return NonRetryable(
        f"s3://{bucket}/{key} does not exist (deleted after upload?)", error_code="CSV_MISSING"
    )


def _versioned(version_id: str | None) -> bool:
    # S3 reports objects written while versioning was off as version "null": overwritten in
    # place, so that id does not name the bytes of one upload.
    return bool(version_id) and version_id != "null"


class Files(Protocol):
    async def read(
        self, bucket: str, key: str, version_id: str | None, etag: str | None = None
    ) -> bytes:
        """Exactly the bytes that were uploaded, whatever was uploaded to the key since.

        By ``version_id`` when the upload notice carried one; else the version whose ETag is
        ``etag`` (some S3 implementations leave the version id out of notifications); on an
        unversioned bucket, the current object only if its ETag still is ``etag``, else
        NonRetryable ``CSV_CHANGED``. NonRetryable ``CSV_MISSING`` when it is gone.
        """

    async def read_into(
        self, bucket: str, key: str, version_id: str | None, etag: str | None, sink: IO[bytes]
    ) -> None:
        """What :meth:`read` returns, written to ``sink`` in chunks (a long file is never
        held in memory whole)."""

    async def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...

    async def write_file(self, bucket: str, key: str, source: IO[bytes], content_type: str) -> None:
        """``source`` from its current position to its end, uploaded in parts when large."""

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

    async def read(
        self, bucket: str, key: str, version_id: str | None, etag: str | None = None
    ) -> bytes:
        sink = io.BytesIO()
        await self.read_into(bucket, key, version_id, etag, sink)
        return sink.getvalue()

    async def read_into(
        self, bucket: str, key: str, version_id: str | None, etag: str | None, sink: IO[bytes]
    ) -> None:
        def get() -> None:
            exact: dict[str, str] = {}
            if _versioned(version_id):
                exact = {"VersionId": str(version_id)}
            elif etag:
                exact = self._version_with(bucket, key, etag)
            try:
                response = self._s3().get_object(Bucket=bucket, Key=key, **exact)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in _CHANGED:
                    raise _changed(bucket, key) from None
                if code not in _MISSING:
                    raise  # an outage: the step is retried
                raise _missing(bucket, key) from None
            for chunk in response["Body"].iter_chunks(CHUNK):
                sink.write(chunk)

        await asyncio.to_thread(get)

    def _version_with(self, bucket: str, key: str, etag: str) -> dict[str, str]:
        """How to get the version of ``key`` whose ETag is ``etag``. A version written while
        the bucket kept none (id ``null``) may be overwritten in place at any moment, so its
        read is also conditional on the ETag."""
        versions = []
        s3 = self._s3()
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
            versions += [v for v in page.get("Versions", []) if v["Key"] == key]
        for version in versions:
            if version["ETag"].strip('"') == etag:
                return {"VersionId": str(version["VersionId"]), "IfMatch": f'"{etag}"'}
        if versions and not any(_versioned(v["VersionId"]) for v in versions):
            raise _changed(bucket, key)  # overwritten in a bucket that keeps no versions
        raise _missing(bucket, key)

    async def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            lambda: self._s3().put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )
        )

    async def write_file(self, bucket: str, key: str, source: IO[bytes], content_type: str) -> None:
        await asyncio.to_thread(
            lambda: self._s3().upload_fileobj(
                source, bucket, key, ExtraArgs={"ContentType": content_type}
            )
        )

    def bucket(self, name: str) -> str:
        return self.settings.resource(name)


class InMemoryFiles:
    """Every write a new version (a versioned bucket), read by the rules of ``Files``."""

    def __init__(self, stack: str = "tpf") -> None:
        self.stack = stack
        self.versions: dict[tuple[str, str], list[tuple[str, str, bytes]]] = {}
        """(bucket, key) → [(version id, ETag, bytes)], oldest first."""

    @property
    def objects(self) -> dict[tuple[str, str], bytes]:
        """The current bytes of every key."""
        return {k: v[-1][2] for k, v in self.versions.items()}

    async def read(
        self, bucket: str, key: str, version_id: str | None, etag: str | None = None
    ) -> bytes:
        for found_id, found_etag, data in reversed(self.versions.get((bucket, key), [])):
            if _versioned(version_id):
                if found_id == version_id:
                    return data
            elif etag is None or found_etag == etag:
                return data
        raise NonRetryable(f"s3://{bucket}/{key} does not exist", error_code="CSV_MISSING")

    async def read_into(
        self, bucket: str, key: str, version_id: str | None, etag: str | None, sink: IO[bytes]
    ) -> None:
        sink.write(await self.read(bucket, key, version_id, etag))

    async def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        versions = self.versions.setdefault((bucket, key), [])
        versions.append((f"v{len(versions) + 1}", etag_of(data), data))

    async def write_file(self, bucket: str, key: str, source: IO[bytes], content_type: str) -> None:
        await self.write(bucket, key, source.read(), content_type)

    def bucket(self, name: str) -> str:
        return f"{self.stack}-{name}"


def etag_of(data: bytes) -> str:
    """S3's ETag of a single-part upload: the MD5 of its bytes, in hex."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


_current: Files | None = None


def files() -> Files:
    global _current
    if _current is None:
        _current = S3Files(Settings())
    return _current


def use_files(replacement: Files | None) -> None:
    global _current
    _current = replacement
