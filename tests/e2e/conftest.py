from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.substrates import localstack_endpoints, localstack_unavailable, require, unique_stack
from tpf.stack import OwnedStack, StackSpec, owned_stack

PIPELINES = (
    "examples.orders:orders",
    "examples.restaurant_approval:restaurant_approval",
    "tests.e2e.pipelines:slow",
    "tests.e2e.pipelines:broken",
)


@pytest.fixture(scope="session")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module", params=["embedded", "localstack"])
def fleet(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    """A coordinator and two workers as separate processes, on each substrate."""
    if request.param == "localstack":
        require(localstack_unavailable(localstack_endpoints()))
    spec = StackSpec(
        substrate=request.param,
        stack=unique_stack(),
        profile="test",
        workers=2,
        pipelines=PIPELINES,
        extra_env={"TPF_TEST_MARKERS": str(markers)},
    )
    with owned_stack(spec, workdir=tmp_path_factory.mktemp("fleet")) as stack:
        yield stack


@pytest.fixture
def api(fleet: OwnedStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{fleet.api_url}/tpf/control-plane/tenants/acme",
        headers={"Authorization": f"Bearer {fleet.control_plane_token}"},
        timeout=10,
    ) as client:
        yield client
