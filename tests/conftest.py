from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.substrates import (
    SUBSTRATES,
    TestStack,
    localstack_endpoints,
    localstack_unavailable,
    require,
    settings_for,
)
from tpf.substrate import Endpoints
from tpfctl.embedded import EmbeddedSubstrate
from tpfctl.lifeline import OWNER_ENV

# Emulators accept any credentials; never let a test reach a real account by accident.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

# Every process a test starts follows this one: a killed or timed-out run leaves no orphans.
os.environ[OWNER_ENV] = str(os.getpid())

# Properties are checked for what they assert, not for speed: a shared 2-core machine can stall
# any example past hypothesis' default 200 ms deadline.
settings.register_profile("tpf", deadline=None)
settings.load_profile("tpf")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[EmbeddedSubstrate]:
    server = EmbeddedSubstrate.start()
    yield server
    server.stop()


def _provisioned(substrate: str, endpoints: Endpoints) -> Iterator[TestStack]:
    from infra.provision import provision, teardown

    settings = settings_for(substrate, endpoints)
    provision(settings, endpoints=endpoints, releases=[("org.example.orders", "1.0.0")])
    yield TestStack(substrate=substrate, settings=settings, endpoints=endpoints)
    teardown(settings, endpoints=endpoints)


@pytest.fixture(scope="session")
def embedded_stack(moto_server: EmbeddedSubstrate) -> Iterator[TestStack]:
    url = moto_server.endpoint_url
    yield from _provisioned("embedded", Endpoints(dynamodb=url, sqs=url, s3=url))


@pytest.fixture(scope="session")
def localstack_stack() -> Iterator[TestStack]:
    endpoints = localstack_endpoints()
    require(localstack_unavailable(endpoints))
    yield from _provisioned("localstack", endpoints)


@pytest.fixture(scope="session", params=SUBSTRATES)
def substrate_stack(request: pytest.FixtureRequest) -> TestStack:
    """A provisioned stack on each substrate, shared by the session's tests."""
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    return stack
