from __future__ import annotations

import pytest

from coordinator.testing import InMemoryCoordinator
from examples.orders import orders
from tests.unit.drive import checkpointed


@pytest.fixture
async def coordinator() -> InMemoryCoordinator:
    c = InMemoryCoordinator.create()
    await c.register(orders)
    await c.register(checkpointed)
    return c
