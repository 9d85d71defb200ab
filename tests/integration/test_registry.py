"""The registry on the fake, moto's server and DynamoDB Local."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from coordinator.registry import (
    DynamoRegistryTable,
    InMemoryRegistryTable,
    Registry,
    register_pipeline,
    release_for,
)
from tests.substrates import TestStack
from tpf.contract import Contract
from tpf.errors import AlreadyExists, NotFound
from tpf.pipeline import Pipeline
from tpf.substrate import open_clients


class Doc(BaseModel):
    n: int


def pipeline() -> Pipeline:
    p = Pipeline(f"org.tests.registry-{uuid.uuid4().hex[:8]}", input=Doc)

    @p.step()
    def only(doc: Doc) -> Doc:
        return doc

    return p


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[Registry]:
    if request.param == "memory":
        yield Registry(InMemoryRegistryTable(), active_ttl_s=0)
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        yield Registry(
            DynamoRegistryTable(aws.dynamodb, stack.settings.resource("registry")), active_ttl_s=0
        )


async def test_a_coordinator_learns_a_contract_without_the_pipeline_code(
    registry: Registry,
) -> None:
    p = pipeline()
    contract = await register_pipeline(registry, p, "1.0.0", now_ms=1)
    fresh = Registry(registry.table)  # another replica: nothing cached
    loaded = await fresh.contract(p.id, contract.version)
    assert loaded.version == contract.version == Contract.from_pipeline(p).version
    loaded.validate_input({"n": 1})


async def test_the_newest_activation_is_the_active_release(registry: Registry) -> None:
    p = pipeline()
    contract = await register_pipeline(registry, p, "1.0.0", now_ms=1)
    await registry.register_release(release_for(contract, "2.0.0", now_ms=2))
    assert (await registry.active_release(p.id)).release_version == "1.0.0"  # type: ignore[union-attr]
    await registry.activate(p.id, "2.0.0", now_ms=3)
    assert (await registry.active_release(p.id)).release_version == "2.0.0"  # type: ignore[union-attr]
    await registry.activate(p.id, "1.0.0", now_ms=4)  # a rollback is one more activation
    assert (await registry.active_release(p.id)).release_version == "1.0.0"  # type: ignore[union-attr]


async def test_a_release_version_is_immutable(registry: Registry) -> None:
    p = pipeline()
    contract = await register_pipeline(registry, p, "1.0.0", now_ms=1)
    same = await registry.register_release(release_for(contract, "1.0.0", now_ms=99))
    assert same.registered_at_epoch_ms == 1  # re-registering the same content is a no-op
    other = release_for(contract, "1.0.0", now_ms=5).model_copy(
        update={"primary_artifact_digest": "sha256:" + "0" * 64}
    )
    with pytest.raises(AlreadyExists):
        await registry.register_release(other)


async def test_unknown_pipelines_and_versions_are_not_found(registry: Registry) -> None:
    assert await registry.active_release("org.tests.nothing") is None
    assert not await registry.known_pipeline("org.tests.nothing")
    with pytest.raises(NotFound):
        await registry.contract("org.tests.nothing", "sha256:" + "1" * 64)
    with pytest.raises(NotFound):
        await registry.activate("org.tests.nothing", "1.0.0", now_ms=1)
