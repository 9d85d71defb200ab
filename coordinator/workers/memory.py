"""The worker directory's ports in memory, for unit tests."""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.workers.port import Item, Value, no_lambda_heartbeat, unknown_worker
from tpf.registry.worker_items import DRAIN_ATTRIBUTE, WORKER_PREFIX


class InMemoryWorkerTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}

    async def put(
        self, pk: str, sk: str, fields: Mapping[str, Value], *, registered_at_ms: int
    ) -> Item:
        item = self.items.setdefault((pk, sk), {"pk": pk, "sk": sk, "ra": registered_at_ms})
        for name, value in fields.items():
            if value is None:
                item.pop(name, None)
            else:
                item[name] = value
        return dict(item)

    async def heartbeat(self, pk: str, sk: str, *, at_ms: int, expires_at_s: int) -> Item:
        item = self.items.get((pk, sk))
        if item is None:
            raise unknown_worker(pk, sk)
        if item.get("kd") == "lambda":
            raise no_lambda_heartbeat(pk, sk)
        item.update(hb=at_ms, ttl=expires_at_s)
        return dict(item)

    async def request_drain(self, pk: str, sk: str, *, at_ms: int) -> Item:
        item = self.items.get((pk, sk))
        if item is None:
            raise unknown_worker(pk, sk)
        item.setdefault(DRAIN_ATTRIBUTE, at_ms)
        return dict(item)

    async def get(self, pk: str, sk: str) -> Item | None:
        item = self.items.get((pk, sk))
        return dict(item) if item is not None else None

    async def query(self, pk: str) -> list[Item]:
        keys = sorted(k for k in self.items if k[0] == pk and k[1].startswith(WORKER_PREFIX))
        return [dict(self.items[k]) for k in keys]


class InMemoryEventSourceMappings:
    """Function name -> enabled; unknown functions have no mapping. Counts lookups."""

    def __init__(self, enabled: Mapping[str, bool] | None = None) -> None:
        self.states: dict[str, bool] = dict(enabled or {})
        self.lookups = 0

    def set(self, function_name: str, enabled: bool) -> None:
        self.states[function_name] = enabled

    async def enabled(self, function_name: str) -> bool:
        self.lookups += 1
        return self.states.get(function_name, False)
