"""The registry table in memory, for unit tests and one-process use."""

from __future__ import annotations

from typing import Any


class InMemoryRegistryTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    async def put_new(self, pk: str, sk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if (pk, sk) in self.items:
            return self.items[(pk, sk)]
        self.items[(pk, sk)] = {"sk": sk, **body}
        return None

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self.items.get((pk, sk))

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        keys = sorted(
            (k for k in self.items if k[0] == pk and k[1].startswith(prefix)), reverse=True
        )
        return [self.items[k] for k in keys[:limit]]

    async def query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.items if k[0] == pk and k[1].startswith(prefix))
        return [self.items[k] for k in keys]
