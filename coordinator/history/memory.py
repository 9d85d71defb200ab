"""The history table in memory."""

from __future__ import annotations

from coordinator.history.port import Change, Group


class InMemoryHistoryTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[int, Group]] = {}

    async def put_many(self, groups: list[Group]) -> list[Exception | None]:
        for group in groups:
            first = group[0]
            self.items.setdefault((first.tenant_id, first.execution_id), {})[first.version] = group
        return [None] * len(groups)

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        items = self.items.get((tenant_id, execution_id), {})
        entries = {c.version: c for key in sorted(items) for c in items[key]}
        return [entries[v] for v in sorted(entries)][:limit]
