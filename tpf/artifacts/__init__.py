"""Release artifacts, read by URI: the port (:mod:`.port`), the in-memory fake (:mod:`.memory`),
and one adapter per scheme (:mod:`.file`, :mod:`.s3`), routed by :class:`ArtifactReaders`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tpf.artifacts.file import FileArtifactReader
from tpf.artifacts.port import ArtifactReader, ArtifactUnavailable
from tpf.artifacts.s3 import S3ArtifactReader


class ArtifactReaders:
    """Each URI to the reader of its scheme."""

    def __init__(self, readers: Mapping[str, ArtifactReader]) -> None:
        self.readers = dict(readers)

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        scheme = urlparse(uri).scheme
        reader = self.readers.get(scheme)
        if reader is None:
            known = ", ".join(f"{s}://" for s in sorted(self.readers))
            raise ArtifactUnavailable(f"cannot read {uri}: only {known} artifacts are readable")
        async for chunk in reader.read(uri):
            yield chunk


def artifact_readers(s3: Any | None = None, *, file_root: Path | None = None) -> ArtifactReaders:
    """What a coordinator reads: ``file://`` (below ``file_root`` if given) and, with an S3
    client, ``s3://``."""
    readers: dict[str, ArtifactReader] = {"file": FileArtifactReader(root=file_root)}
    if s3 is not None:
        readers["s3"] = S3ArtifactReader(s3)
    return ArtifactReaders(readers)
