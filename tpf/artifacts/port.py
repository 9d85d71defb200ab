"""Reading a release artifact back: the bytes behind its URI, in chunks, hashed as they stream."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Protocol

from tpf.errors import TpfError

CHUNK = 1 << 20
IN_MEMORY = 16 << 20
"""Bytes of an artifact kept in memory while it is read; the rest goes to a temporary file."""


class ArtifactUnavailable(TpfError):
    """An artifact's bytes cannot be read from its URI."""


class ArtifactReader(Protocol):
    """Port: the bytes of an artifact, in chunks, from its URI."""

    def read(self, uri: str) -> AsyncIterator[bytes]:
        """Raise :class:`ArtifactUnavailable` when the bytes cannot be read."""
        ...


async def artifact_digest(reader: ArtifactReader, uri: str) -> str:
    """``sha256:<hex>`` of the artifact at ``uri``, hashed as it streams in."""
    digest = hashlib.sha256()
    async for chunk in reader.read(uri):
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


async def spooled_artifact(reader: ArtifactReader, uri: str) -> tuple[str, IO[bytes]]:
    """The artifact's digest and its bytes, rewound (close the file when done)."""
    digest, spool = hashlib.sha256(), tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # noqa: SIM115
    try:
        async for chunk in reader.read(uri):
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return "sha256:" + digest.hexdigest(), spool
