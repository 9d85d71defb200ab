"""Reading a release artifact back: the bytes behind its URI, in chunks, hashed as they stream."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Protocol

from tpf.errors import TpfError

CHUNK = 1 << 20


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
