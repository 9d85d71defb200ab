"""The registry on the fake, moto's server and DynamoDB Local."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from examples.greeting import PIPELINE_ID
from tests.substrates import TestStack
from tpf.artifacts import artifact_readers
from tpf.artifacts.port import ArtifactReader
from tpf.artifacts.s3 import s3_location
from tpf.contract import Contract
from tpf.errors import AlreadyExists, Conflict, NotFound
from tpf.pipeline import Pipeline
from tpf.registry import Registry, register_pipeline, release_for
from tpf.registry.dynamodb import DynamoRegistryTable
from tpf.registry.memory import InMemoryRegistryTable
from tpf.releases import InvalidRelease, read_descriptor, sha256_digest
from tpf.substrate import open_clients, sync_client
from tpfctl.release_build import build_release, upload_artifact

GREETING_V1 = "examples.greeting.v1:pipeline"
GREETING_V2 = "examples.greeting.v2:pipeline"


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


async def test_a_tenants_own_activation_overrides_the_default_for_it_alone(
    registry: Registry,
) -> None:
    p = pipeline()
    contract = await register_pipeline(registry, p, "1.0.0", now_ms=1)
    await registry.register_release(release_for(contract, "2.0.0", now_ms=2))
    await registry.activate(p.id, "2.0.0", now_ms=3, tenant_id="acme")
    fresh = Registry(registry.table, active_ttl_s=0)  # another replica: nothing cached

    async def active(tenant: str | None) -> str:
        found = await fresh.active_release(p.id, tenant)
        assert found is not None
        return found.release_version

    assert [await active(t) for t in (None, "acme", "globex")] == ["1.0.0", "2.0.0", "1.0.0"]
    assert [a.tenant_id for a in await fresh.activations(p.id, tenant_id="acme")] == ["acme"]
    assert await fresh.active_anywhere(p.id) == {"1.0.0", "2.0.0"}


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


# -- releases from descriptors ----------------------------------------------------------------


async def test_releases_are_listed_and_activations_kept_newest_first(registry: Registry) -> None:
    p = pipeline()
    contract = await register_pipeline(registry, p, "1.0.0", now_ms=1)
    for at, version in enumerate(("2.0.0", "3.0.0"), start=2):
        await registry.register_release(release_for(contract, version, now_ms=at))
    await registry.activate(p.id, "3.0.0", now_ms=10)
    await registry.activate(p.id, "2.0.0", now_ms=20)

    listed = await Registry(registry.table).releases(p.id)
    assert [r.release_version for r in listed] == ["3.0.0", "2.0.0", "1.0.0"]
    assert [r.activated_at_epoch_ms for r in listed] == [None, 20, None]
    events = await registry.activations(p.id)
    assert [(a.release_version, a.activated_at_epoch_ms) for a in events] == [
        ("2.0.0", 20),
        ("3.0.0", 10),
        ("1.0.0", 1),
    ]
    assert await registry.releases("org.tests.nothing") == []
    assert await registry.activations("org.tests.nothing") == []


async def test_listing_releases_pages_through_the_partition(registry: Registry) -> None:
    p = pipeline()
    contract = await register_pipeline(registry, p, "0", now_ms=0)
    versions = [f"{i}.0.0" for i in range(1, 40)]
    for at, version in enumerate(versions, start=1):
        record = release_for(contract, version, now_ms=at)
        # Big records make DynamoDB split the query into 1 MB pages.
        padded = record.model_copy(update={"primary_artifact_id": "x" * 60_000})
        await registry.register_release(padded)
    listed = await registry.releases(p.id)
    assert [r.release_version for r in listed] == [*reversed(versions), "0"]


@pytest.fixture
async def release_store(
    substrate_stack: TestStack,
) -> AsyncIterator[tuple[TestStack, Registry, ArtifactReader]]:
    async with open_clients(substrate_stack.settings, endpoints=substrate_stack.endpoints) as aws:
        table = DynamoRegistryTable(aws.dynamodb, substrate_stack.settings.resource("registry"))
        yield substrate_stack, Registry(table, active_ttl_s=0), artifact_readers(aws.s3)


async def test_an_uploaded_artifact_is_verified_from_s3_at_registration(
    release_store: tuple[TestStack, Registry, ArtifactReader], tmp_path: Path
) -> None:
    stack, registry, artifacts = release_store
    version = f"1.0.0-{uuid.uuid4().hex[:6]}"
    descriptor_path, artifact_path = build_release(GREETING_V1, version, tmp_path)
    uploaded = upload_artifact(stack.settings, descriptor_path, endpoints=stack.endpoints)
    bucket = stack.settings.resource("releases")
    key = f"{PIPELINE_ID}/{version}/{artifact_path.name}"
    assert uploaded.primary.uri == f"s3://{bucket}/{key}"
    assert read_descriptor(descriptor_path) == uploaded  # the file now names the object

    record = await registry.register_descriptor(uploaded, artifacts, now_ms=1)
    assert record.primary_artifact_digest == sha256_digest(artifact_path.read_bytes())
    assert record.artifacts[0].uri == uploaded.primary.uri
    await registry.activate(PIPELINE_ID, version, now_ms=2)
    assert (await Registry(registry.table).active_release(PIPELINE_ID)) == record.model_copy(
        update={"activated_at_epoch_ms": 2}
    )


async def test_a_tampered_or_missing_artifact_in_s3_is_refused(
    release_store: tuple[TestStack, Registry, ArtifactReader], tmp_path: Path
) -> None:
    stack, registry, artifacts = release_store
    version = f"1.0.0-{uuid.uuid4().hex[:6]}"
    descriptor_path, _ = build_release(GREETING_V1, version, tmp_path)
    uploaded = upload_artifact(stack.settings, descriptor_path, endpoints=stack.endpoints)
    bucket, key = s3_location(uploaded.primary.uri)
    s3 = sync_client(stack.settings, "s3", endpoints=stack.endpoints)
    s3.put_object(Bucket=bucket, Key=key, Body=b"not the code that was built")
    with pytest.raises(InvalidRelease) as tampered:
        await registry.register_descriptor(uploaded, artifacts, now_ms=1)
    assert tampered.value.pointer == "/artifacts/0/digest"

    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(InvalidRelease) as missing:
        await registry.register_descriptor(uploaded, artifacts, now_ms=1)
    assert missing.value.pointer == "/artifacts/0/uri"
    with pytest.raises(NotFound):
        await registry.release(PIPELINE_ID, version)


def test_the_release_bucket_keeps_the_first_build_of_a_version(
    substrate_stack: TestStack, tmp_path: Path
) -> None:
    version = f"1.0.0-{uuid.uuid4().hex[:6]}"
    first, _ = build_release(GREETING_V1, version, tmp_path / "first")
    uploaded = upload_artifact(substrate_stack.settings, first, endpoints=substrate_stack.endpoints)
    again, _ = build_release(GREETING_V1, version, tmp_path / "again")
    same = upload_artifact(substrate_stack.settings, again, endpoints=substrate_stack.endpoints)
    assert same == uploaded  # the same bytes: nothing to refuse

    other, _ = build_release(GREETING_V2, version, tmp_path / "other")
    with pytest.raises(Conflict):
        upload_artifact(substrate_stack.settings, other, endpoints=substrate_stack.endpoints)
    bucket, key = s3_location(uploaded.primary.uri)
    s3 = sync_client(substrate_stack.settings, "s3", endpoints=substrate_stack.endpoints)
    kept = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert sha256_digest(kept) == uploaded.primary.digest
    assert read_descriptor(other).primary.uri.startswith("file://")  # left as it was
