"""``file://`` artifacts, read from this process's filesystem."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from tpf.artifacts.port import CHUNK, ArtifactUnavailable


def file_path(uri: str) -> Path:
    """The absolute path a ``file://`` URI names."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ArtifactUnavailable(f"{uri} is not a file:// URI of this machine")
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise ArtifactUnavailable(f"{uri} does not name an absolute path")
    return path


class FileArtifactReader:
    """``file://`` URIs, read from this process's filesystem, optionally only below ``root``."""

    def __init__(self, *, root: Path | None = None, chunk_size: int = CHUNK) -> None:
        self.root = root.resolve() if root is not None else None
        self.chunk_size = chunk_size

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        path = file_path(uri)
        if self.root is not None and not path.resolve().is_relative_to(self.root):
            raise ArtifactUnavailable(f"{path} is outside {self.root}")
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except OSError as exc:
            raise ArtifactUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            while chunk := await asyncio.to_thread(file.read, self.chunk_size):
                yield chunk
        except OSError as exc:
            raise ArtifactUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        finally:
            file.close()
