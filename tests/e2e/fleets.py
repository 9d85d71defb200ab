"""Starting a fleet for a module of end-to-end tests, on the substrate a fixture parameter names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.substrates import localstack_endpoints, localstack_unavailable, require, unique_stack
from tpfctl.stack import OwnedStack, StackSpec, owned_stack


def running_fleet(
    request: pytest.FixtureRequest,
    markers: Path,
    workdir: Path,
    *,
    pipelines: tuple[str, ...],
    coordinators: int = 1,
    provider_mock: tuple[str, ...] | None = None,
    workers: int = 2,
) -> Iterator[OwnedStack]:
    """Coordinators and workers as separate processes, on the substrate ``request`` names."""
    if request.param == "localstack":
        require(localstack_unavailable(localstack_endpoints()))
    spec = StackSpec(
        substrate=request.param,
        stack=unique_stack(),
        profile="test",
        coordinators=coordinators,
        workers=workers,
        pipelines=pipelines,
        extra_env={"TPF_TEST_MARKERS": str(markers)},
        provider_mock=provider_mock,
    )
    with owned_stack(spec, workdir=workdir) as stack:
        yield stack
