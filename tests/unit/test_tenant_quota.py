"""One tenant's flood is answered 429 with Retry-After; the others keep submitting."""

from __future__ import annotations

import httpx

from coordinator.api import create_app
from coordinator.quota import MAX_TENANTS, TenantQuota
from coordinator.testing import InMemoryCoordinator
from examples.orders import orders
from tests.workers import ORDER
from tpf.codec import encode_envelope

CONTROL, ADMIN = "control-token-0123456789", "admin-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_tenant_gets_its_burst_then_its_rate_and_others_are_untouched() -> None:
    clock = Clock()
    quota = TenantQuota(rate=2, burst=3, clock=clock)
    assert [quota.take("flood") for _ in range(3)] == [0, 0, 0]
    assert quota.take("flood") == 0.5
    assert quota.take("quiet") == 0
    clock.now += 0.5
    assert quota.take("flood") == 0
    assert quota.take("flood") > 0


def test_made_up_tenants_cannot_grow_the_buckets_without_bound() -> None:
    quota = TenantQuota(rate=1, burst=1, clock=Clock())
    for n in range(MAX_TENANTS + 10):
        quota.take(f"t-{n}")
    assert len(quota._buckets) == MAX_TENANTS


def test_a_rate_of_zero_turns_the_quota_off() -> None:
    quota = TenantQuota(rate=0, burst=1)
    assert all(quota.take("t") == 0 for _ in range(1000))


async def test_a_flooding_tenant_is_answered_429_with_retry_after() -> None:
    coordinator = InMemoryCoordinator.create()
    await coordinator.register(orders)
    app = create_app(
        coordinator.service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        quota=TenantQuota(rate=0.5, burst=2),
    )
    body = {"pipelineId": orders.id, "inputPayload": encode_envelope("x", ORDER)}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://coordinator/tpf/control-plane/tenants",
        headers={"Authorization": f"Bearer {CONTROL}"},
    ) as http:
        flood = [(await http.post("/flood/executions", json=body)).status_code for _ in range(3)]
        refused = await http.post("/flood/executions", json=body)
        other = await http.post("/quiet/executions", json=body)
    assert flood == [200, 200, 429]
    assert (refused.status_code, refused.json()["errorCode"]) == (429, "TENANT_QUOTA")
    assert int(refused.headers["Retry-After"]) >= 1
    assert other.status_code == 200
