from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.fleets import running_fleet
from tpf.stack import OwnedStack

PIPELINES = (
    "examples.orders:orders",
    "examples.restaurant_approval:restaurant_approval",
    "tests.e2e.pipelines:slow",
    "tests.e2e.pipelines:broken",
    "tests.e2e.pipelines:short_wait",
)


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
