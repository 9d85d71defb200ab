"""The artifact reader contract, one suite on the in-memory fake, the filesystem, and S3 on
moto's server and LocalStack: an artifact reads back byte for byte, in chunks, and one that is
not there is ``ArtifactUnavailable``, never another error."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.substrates import TestStack
from tpf.artifacts.file import FileArtifactReader
from tpf.artifacts.memory import InMemoryArtifactReader
from tpf.artifacts.port import ArtifactReader, ArtifactUnavailable, artifact_digest
from tpf.artifacts.s3 import S3ArtifactReader
from tpf.substrate import open_clients

CHUNK = 1024


@dataclass
class Store:
    reader: ArtifactReader
    put: Callable[[bytes], Awaitable[str]]
    """Store bytes, return the URI that names them."""
    missing: str
    """A URI of the reader's scheme that names nothing."""


@pytest.fixture(params=["memory", "file", "embedded", "localstack"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        memory = InMemoryArtifactReader()

        async def keep(data: bytes) -> str:
            uri = f"mem://{uuid.uuid4().hex}"
            memory.blobs[uri] = data
            return uri

        yield Store(memory, keep, "mem://nothing")
        return
    if request.param == "file":

        async def write(data: bytes) -> str:
            path = tmp_path / f"{uuid.uuid4().hex}.zip"
            path.write_bytes(data)
            return path.as_uri()

        missing = (tmp_path / "nothing.zip").as_uri()
        yield Store(FileArtifactReader(chunk_size=CHUNK), write, missing)
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    bucket = stack.settings.resource("releases")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:

        async def upload(data: bytes) -> str:
            key = f"contract/{uuid.uuid4().hex}.zip"
            await aws.s3.put_object(Bucket=bucket, Key=key, Body=data)
            return f"s3://{bucket}/{key}"

        yield Store(S3ArtifactReader(aws.s3, chunk_size=CHUNK), upload, f"s3://{bucket}/nothing")


async def read(reader: ArtifactReader, uri: str) -> list[bytes]:
    return [chunk async for chunk in reader.read(uri)]


async def test_an_artifact_reads_back_byte_for_byte_and_hashes_as_it_streams(store: Store) -> None:
    data = bytes(range(256)) * 20  # several chunks of the file and S3 readers
    uri = await store.put(data)
    chunks = await read(store.reader, uri)
    assert b"".join(chunks) == data
    assert all(len(chunk) <= CHUNK for chunk in chunks) or len(chunks) == 1
    assert await artifact_digest(store.reader, uri) == "sha256:" + hashlib.sha256(data).hexdigest()


async def test_an_empty_artifact_is_empty_not_missing(store: Store) -> None:
    uri = await store.put(b"")
    assert b"".join(await read(store.reader, uri)) == b""


async def test_an_artifact_that_is_not_there_is_unavailable(store: Store) -> None:
    with pytest.raises(ArtifactUnavailable):
        await read(store.reader, store.missing)
