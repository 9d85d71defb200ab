"""Artifacts in memory, for unit tests: every read is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from tpf.artifacts.port import ArtifactUnavailable


class InMemoryArtifactReader:
    """The fake: artifacts by URI, with every read recorded."""

    def __init__(self, blobs: Mapping[str, bytes] | None = None) -> None:
        self.blobs = dict(blobs or {})
        self.reads: list[str] = []

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        self.reads.append(uri)
        if uri not in self.blobs:
            raise ArtifactUnavailable(f"no artifact at {uri}")
        yield self.blobs[uri]
