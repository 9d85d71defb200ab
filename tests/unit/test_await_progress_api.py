"""``GET .../executions/{id}/await``: how far the await an execution waits on is answered, as
``tpf status`` and ``tpf upload --wait`` show it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from coordinator.api import create_app
from coordinator.interactions import interactions_router
from coordinator.testing import InMemoryCoordinator
from examples.restaurant_approval import AWAIT_STEP, restaurant_approval
from tests.unit.drive import checkpointed, submit
from tests.unit.test_awaits import accepted, parked

CONTROL, ADMIN = "control-token", "admin-token"


@pytest.fixture
async def c() -> InMemoryCoordinator:
    coordinator = InMemoryCoordinator.create()
    await coordinator.register(restaurant_approval)
    await coordinator.register(checkpointed)
    return coordinator


@pytest.fixture
async def http(c: InMemoryCoordinator) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        c.service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        routers=[interactions_router(c.awaits)],
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://coordinator/tpf/control-plane/tenants/acme",
        headers={"Authorization": f"Bearer {CONTROL}"},
    ) as client:
        yield client


async def test_a_waiting_execution_reports_its_await_until_it_is_answered(
    c: InMemoryCoordinator, http: httpx.AsyncClient
) -> None:
    execution_id, parts = await parked(c)

    waiting = await http.get(f"/executions/{execution_id}/await")
    await c.awaits.complete(
        "acme",
        interaction_id=parts["interaction"].interaction_id,
        response=accepted(parts["request"]["orderId"]),
    )
    moved_on = await http.get(f"/executions/{execution_id}/await")

    assert waiting.status_code == 200, waiting.text
    progress = waiting.json()
    assert (progress["stepId"], progress["itemized"]) == (AWAIT_STEP, False)
    assert (progress["answered"], progress["total"], progress["status"]) == (0, 1, "OPEN")
    assert moved_on.status_code == 404  # answered: the execution resumed, waiting on none


async def test_an_itemized_await_counts_its_items(
    c: InMemoryCoordinator, http: httpx.AsyncClient
) -> None:
    execution_id, _ = await parked(c)
    record = await c.service.status("acme", execution_id)
    assert record.await_unit_id is not None
    key = ("acme", record.await_unit_id)
    # As the CSV lane's send step stands after 412 answers of a 70,867-row file.
    c.await_table.uncarry(*key, itemized=True, total=70_867, done=412)

    progress = (await http.get(f"/executions/{execution_id}/await")).json()

    assert (progress["itemized"], progress["answered"], progress["total"]) == (True, 412, 70_867)


async def test_an_execution_waiting_on_nothing_has_no_await(
    c: InMemoryCoordinator, http: httpx.AsyncClient
) -> None:
    running = await submit(c, checkpointed.id, {"n": 1})

    none = await http.get(f"/executions/{running}/await")
    unknown = await http.get("/executions/no-such-execution/await")

    assert none.status_code == 404 and unknown.status_code == 404
