"""The registry's storage port: immutable items under a pipeline's partition, newest first."""

from __future__ import annotations

from typing import Any, Protocol


class RegistryTable(Protocol):
    """Port: write-once items and newest-first prefix queries on one partition."""

    async def put_new(self, pk: str, sk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Write unless present; return the existing body when present."""

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None: ...

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]: ...

    async def query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        """Every item whose sort key starts with ``prefix``, in sort-key order."""
        ...
