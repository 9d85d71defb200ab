from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.fleets import running_fleet
from tpfctl.stack import OwnedStack

PIPELINES = (
    "examples.orders:orders",
    "examples.restaurant_approval:restaurant_approval",
    "tests.e2e.pipelines:slow",
    "tests.e2e.pipelines:broken",
    "tests.e2e.pipelines:short_wait",
)


E2E_TIMEOUT_S = 300
"""Per test, fixtures included: a module's first test also starts its fleet (a minute on a busy
2-core machine), and a test waits on several executions end to end. Tests that wait longer
say so with their own ``pytest.mark.timeout``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


@pytest.fixture(autouse=True)
def no_member_crashed(request: pytest.FixtureRequest) -> Iterator[None]:
    """A member that exits without being asked to is restarted by its fleet, so a test might
    still pass: fail it instead. (Kills a test asks for go through ``fleet.kill``.)"""
    yield
    for value in request.node.funcargs.values():
        if isinstance(value, OwnedStack) and value.fleet.crashes:
            crashes = list(value.fleet.crashes)
            value.fleet.crashes.clear()  # reported once, by the test during which they happened
            pytest.fail("\n".join(f"{c.describe()}:\n{c.log_tail}" for c in crashes))


@pytest.fixture(scope="session")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module", params=["embedded", "localstack"])
def fleet(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    """A coordinator and two workers as separate processes, on each substrate."""
    workdir = tmp_path_factory.mktemp("fleet")
    yield from running_fleet(request, markers, workdir, pipelines=PIPELINES)


@pytest.fixture
def api(fleet: OwnedStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{fleet.api_url}/tpf/control-plane/tenants/acme",
        headers={"Authorization": f"Bearer {fleet.control_plane_token}"},
        timeout=10,
    ) as client:
        yield client
