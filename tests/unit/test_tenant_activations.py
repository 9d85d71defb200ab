"""Activations per tenant: the default serves every tenant without its own; a tenant's own
activation overrides it for that tenant alone (TPF scopes activations per tenant)."""

from __future__ import annotations

import pytest

from coordinator.retirement import ReleaseRetirement
from coordinator.testing import InMemoryCoordinator
from examples.greeting import v1, v2
from tpf.contract import Contract
from tpf.errors import Conflict
from tpf.registry import Registry, register_pipeline, release_for
from tpf.registry.memory import InMemoryRegistryTable


@pytest.fixture
async def registry() -> Registry:
    registry = Registry(InMemoryRegistryTable(), active_ttl_s=0)
    await register_pipeline(registry, v1.pipeline, "1.0.0", now_ms=1)
    contract = Contract.from_pipeline(v2.pipeline)
    await registry.put_contract(contract)
    await registry.register_release(release_for(contract, "2.0.0", now_ms=2))
    return registry


async def active(registry: Registry, tenant: str | None) -> str | None:
    found = await registry.active_release(v1.pipeline.id, tenant)
    return None if found is None else found.release_version


async def test_a_tenants_activation_overrides_the_default_for_that_tenant_alone(
    registry: Registry,
) -> None:
    pipeline = v1.pipeline.id
    assert [await active(registry, t) for t in (None, "acme", "globex")] == ["1.0.0"] * 3
    await registry.activate(pipeline, "2.0.0", now_ms=10, tenant_id="acme")
    assert [await active(registry, t) for t in (None, "acme", "globex")] == [
        "1.0.0",
        "2.0.0",
        "1.0.0",
    ]
    [own] = await registry.activations(pipeline, tenant_id="acme")
    assert (own.tenant_id, own.release_version) == ("acme", "2.0.0")
    assert [a.release_version for a in await registry.activations(pipeline)] == ["1.0.0"]
    # Activating for tenant "default" moves the default, and so every other tenant.
    await registry.activate(pipeline, "2.0.0", now_ms=20, tenant_id="default")
    assert await active(registry, "globex") == "2.0.0"
    await registry.activate(pipeline, "1.0.0", now_ms=30, tenant_id="acme")
    assert [await active(registry, t) for t in ("acme", "globex")] == ["1.0.0", "2.0.0"]
    assert await registry.active_anywhere(pipeline) == {"1.0.0", "2.0.0"}


async def test_a_release_active_for_any_tenant_cannot_be_retired() -> None:
    c = InMemoryCoordinator.create()
    await c.register(v1.pipeline, "1.0.0")
    await c.register(v2.pipeline, "2.0.0")  # the default is now 2.0.0
    await c.registry.activate(v1.pipeline.id, "1.0.0", now_ms=50, tenant_id="acme")
    retirement = ReleaseRetirement(registry=c.registry, store=c.store, work=c.work_queues)
    with pytest.raises(Conflict) as refused:
        await retirement.retire(v1.pipeline.id, "1.0.0")
    assert refused.value.code == "RELEASE_ACTIVE"


async def test_submissions_pin_their_tenants_release() -> None:
    c = InMemoryCoordinator.create()
    await c.register(v1.pipeline, "1.0.0")
    await c.register(v2.pipeline, "2.0.0")
    await c.registry.activate(v1.pipeline.id, "1.0.0", now_ms=50, tenant_id="acme")
    pinned = {}
    for tenant in ("acme", "globex"):
        outcome = await c.service.submit(
            tenant_id=tenant,
            pipeline_id=v1.pipeline.id,
            value={"name": "Ada"},
            idempotency_key="k",
            now_ms=100,
        )
        pinned[tenant] = outcome.record.release_version
    assert pinned == {"acme": "1.0.0", "globex": "2.0.0"}
