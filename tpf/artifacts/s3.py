"""``s3://`` artifacts, streamed from S3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from tpf.artifacts.port import CHUNK, ArtifactUnavailable


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI."""
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key:
        raise ArtifactUnavailable(f"{uri} is not an s3://bucket/key URI")
    return parsed.netloc, key


class S3ArtifactReader:
    """``s3://bucket/key`` URIs, streamed from S3 through an aioboto3 client."""

    def __init__(self, s3: Any, *, chunk_size: int = CHUNK) -> None:
        self.s3 = s3
        self.chunk_size = chunk_size

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        bucket, key = s3_location(uri)
        try:
            response = await self.s3.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            # Entered for its exit, which releases the connection; the chunks come from the
            # wrapper, since entering returns the bare HTTP response.
            async with body:
                async for chunk in body.iter_chunks(self.chunk_size):
                    yield chunk
        except ClientError as exc:
            error = exc.response.get("Error", {})
            reason = error.get("Message") or error.get("Code") or str(exc)
            raise ArtifactUnavailable(f"cannot read {uri}: {reason}") from exc
        except BotoCoreError as exc:
            raise ArtifactUnavailable(f"cannot read {uri}: {exc}") from exc
