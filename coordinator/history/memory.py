"""The history table in memory."""

from __future__ import annotations

from coordinator.history.port import Change


class InMemoryHistoryTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[int, Change]] = {}

    async def put_many(self, changes: list[Change]) -> list[Exception | None]:
        for change in changes:
            self.items.setdefault((change.tenant_id, change.execution_id), {})[change.version] = (
                change
            )
        return [None] * len(changes)

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        entries = self.items.get((tenant_id, execution_id), {})
        return [entries[v] for v in sorted(entries)][:limit]
