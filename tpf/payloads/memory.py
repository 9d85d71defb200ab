"""The payload backend in memory, for unit tests and the embedded substrate."""

from __future__ import annotations


class InMemoryPayloadBackend:
    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.objects: dict[str, bytes] = {}

    async def write_item(self, key: str, data: bytes) -> None:
        self.items.setdefault(key, data)

    async def read_item(self, key: str) -> bytes | None:
        return self.items.get(key)

    async def write_object(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    async def read_object(self, key: str) -> bytes | None:
        return self.objects.get(key)
