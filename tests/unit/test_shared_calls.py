"""A burst of callers meeting a cold cache makes one read: the registry's contracts, releases
and active releases, and the calls behind them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from examples.orders import orders
from tpf.errors import NotFound
from tpf.registry import Registry, register_pipeline
from tpf.registry.memory import InMemoryRegistryTable
from tpf.shared_calls import SharedCalls


async def test_concurrent_calls_for_a_key_share_one_and_its_outcome() -> None:
    shared: SharedCalls[str, int] = SharedCalls()
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiting = [asyncio.ensure_future(shared.call("k", load)) for _ in range(10)]
    other = asyncio.ensure_future(shared.call("other", load))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [waiting[0].result()] * 10
    assert calls == 2 and await other in (1, 2)
    assert await shared.call("k", load) == 3  # nothing is kept once a call ended

    async def fail() -> int:
        raise NotFound("gone")

    failing = [shared.call("bad", fail) for _ in range(3)]
    outcomes = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(o, NotFound) for o in outcomes)


class CountingTable(InMemoryRegistryTable):
    """The in-memory registry table, counting the reads made of it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        self.reads += 1
        await asyncio.sleep(0)  # a read takes a while: others arrive meanwhile
        return await super().get(pk, sk)

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        self.reads += 1
        await asyncio.sleep(0)
        return await super().newest(pk, prefix, limit)


@pytest.mark.parametrize("tenant_id", [None, "acme"])
async def test_a_burst_of_submits_reads_the_registry_once(tenant_id: str | None) -> None:
    table = CountingTable()
    await register_pipeline(Registry(table), orders, "1.0.0", now_ms=1)
    registry = Registry(table)  # another replica: nothing cached
    table.reads = 0

    burst = [registry.active_release(orders.id, tenant_id) for _ in range(50)]
    found = await asyncio.gather(*burst)
    assert {r.release_version for r in found if r is not None} == {"1.0.0"}
    # The default's activation (and, for a tenant, its own first), then the release.
    assert table.reads == (2 if tenant_id is None else 3)
    table.reads = 0
    release = found[0]
    assert release is not None
    contracts = [registry.contract(orders.id, release.contract_version) for _ in range(50)]
    assert len({c.version for c in await asyncio.gather(*contracts)}) == 1
    assert table.reads == 1
