"""Release artifacts and descriptors, and the registry registering them, on the fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from examples.greeting import PIPELINE_ID, v1, v2
from tpf.artifacts import ArtifactReaders
from tpf.artifacts.file import FileArtifactReader
from tpf.artifacts.memory import InMemoryArtifactReader
from tpf.artifacts.port import ArtifactUnavailable, artifact_digest
from tpf.contract import Contract
from tpf.errors import AlreadyExists
from tpf.registry import Registry, register_pipeline
from tpf.registry.memory import InMemoryRegistryTable
from tpf.releases import (
    MANIFEST,
    InvalidRelease,
    ReleaseArtifact,
    ReleaseDescriptor,
    read_descriptor,
    sha256_digest,
)
from tpfctl.release_build import TPF_CONTRACT, build_release, zip_files

ROOT = Path(__file__).resolve().parents[2]
V1 = "examples.greeting.v1:pipeline"
V2 = "examples.greeting.v2:pipeline"
CODE = b"the bytes of a release artifact"


def descriptor(
    version: str = "1.0.0",
    *,
    pipeline: Any = v1.pipeline,
    data: bytes = CODE,
    uri: str | None = None,
    with_contract: bool = True,
) -> ReleaseDescriptor:
    contract = Contract.from_pipeline(pipeline)
    return ReleaseDescriptor(
        pipeline_id=contract.pipeline_id,
        contract_version=contract.version,
        release_version=version,
        artifacts=(
            ReleaseArtifact(
                artifact_id="examples.greeting",
                kind="python-zip",
                uri=uri or f"mem://greeting/{version}.zip",
                digest=sha256_digest(data),
                step_ids=tuple(s.id for s in pipeline.steps),
            ),
        ),
        contract=json.loads(contract.canonical_json()) if with_contract else None,
    )


@pytest.fixture
def registry() -> Registry:
    return Registry(InMemoryRegistryTable(), active_ttl_s=0)


# -- building ---------------------------------------------------------------------------------


def test_building_the_same_code_twice_gives_the_same_bytes_and_digest(tmp_path: Path) -> None:
    first_descriptor, first = build_release(V1, "1.0.0", tmp_path / "a")
    second_descriptor, second = build_release(V1, "1.0.0", tmp_path / "b")
    assert first.name == "org.example.greeting-1.0.0.zip"
    assert first_descriptor.name == "org.example.greeting-1.0.0.release.json"
    assert first.read_bytes() == second.read_bytes()
    one, other = read_descriptor(first_descriptor), read_descriptor(second_descriptor)
    assert one.primary.digest == other.primary.digest == sha256_digest(first.read_bytes())
    assert one.primary.uri == first.as_uri()


def test_the_artifact_holds_the_package_sources_with_fixed_times_and_no_bytecode(
    tmp_path: Path,
) -> None:
    # Bytecode next to the sources must not leak into the artifact.
    __import__("examples.greeting.v2")
    _, artifact = build_release(V1, "1.0.0", tmp_path)
    with zipfile.ZipFile(artifact) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {
        "examples/__init__.py",
        "examples/greeting/__init__.py",
        "examples/greeting/v1.py",
        "examples/greeting/v2.py",
    } <= set(names)
    sources = [n for n in names if n not in (MANIFEST, TPF_CONTRACT)]
    assert all(n.endswith(".py") and "__pycache__" not in n for n in sources)
    assert not any(n.startswith("examples/csv_payments") for n in names)  # a sibling package
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_two_pipelines_of_one_package_make_two_artifacts_that_name_their_code(
    tmp_path: Path,
) -> None:
    _, one = build_release(V1, "1.0.0", tmp_path / "one")
    _, two = build_release(V2, "1.0.0", tmp_path / "two")
    assert sha256_digest(one.read_bytes()) != sha256_digest(two.read_bytes())
    with zipfile.ZipFile(two) as archive:
        manifest = json.loads(archive.read(MANIFEST))
    assert manifest == {
        "pipelineId": PIPELINE_ID,
        "contractVersion": Contract.from_pipeline(v2.pipeline).version,
        "entryPoint": V2,
    }


def test_the_artifact_imports_the_pipeline_like_the_source_tree(tmp_path: Path) -> None:
    _, artifact = build_release(V2, "2.0.0", tmp_path)
    script = (
        "import examples.greeting.v2 as m; "
        "from tpf.contract import Contract; "
        "print(m.__file__); print(Contract.from_pipeline(m.pipeline).version)"
    )
    env = {**os.environ, "PYTHONPATH": f"{artifact}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    location, version = done.stdout.split()
    assert location.startswith(str(artifact))
    assert version == Contract.from_pipeline(v2.pipeline).version


def test_a_descriptor_names_the_contract_steps_and_entry_point(tmp_path: Path) -> None:
    path, _ = build_release(V2, "2.0.0", tmp_path)
    built = read_descriptor(path)
    contract = Contract.from_pipeline(v2.pipeline)
    assert (built.pipeline_id, built.release_version) == (PIPELINE_ID, "2.0.0")
    assert built.contract_version == contract.version
    assert built.checked_contract() == contract
    assert built.primary.step_ids == ("welcome", "pause", "greet")
    assert built.primary.entry_point == V2
    raw = json.loads(path.read_text())
    assert {"schemaVersion", "pipelineId", "contractVersion", "releaseVersion"} <= set(raw)
    assert {"artifactId", "kind", "uri", "digest", "stepIds", "capabilities"} <= set(
        raw["artifacts"][0]
    )


def test_the_two_greeting_releases_have_different_contracts() -> None:
    assert Contract.from_pipeline(v1.pipeline) != Contract.from_pipeline(v2.pipeline)


def test_a_bad_release_version_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    for version in ("", "../1", "1 0", "active"):
        with pytest.raises(InvalidRelease):
            build_release(V1, version, tmp_path)
    assert not list(tmp_path.iterdir())


# -- descriptors --------------------------------------------------------------------------------


def test_the_artifact_carries_its_contract_where_tpfs_tooling_reads_it(tmp_path: Path) -> None:
    _, artifact = build_release(V1, "1.0.0", tmp_path)
    with zipfile.ZipFile(artifact) as archive:
        document = json.loads(archive.read(TPF_CONTRACT))
    contract = Contract.from_pipeline(v1.pipeline)
    assert (document["pipelineId"], document["contractVersion"]) == (
        contract.pipeline_id,
        contract.version,
    )
    assert [s["authoredName"] for s in document["steps"]] == [s.id for s in contract.steps]
    assert Contract.model_validate(document["tpfContract"]).version == contract.version


def test_a_descriptor_survives_a_round_trip_through_its_json() -> None:
    original = descriptor()
    again = ReleaseDescriptor.parse(json.loads(original.to_json()))
    assert again == original
    assert again.checked_contract() == Contract.from_pipeline(v1.pipeline)


def test_tpfs_default_release_version_the_contract_version_is_a_release_version() -> None:
    contract_version = Contract.from_pipeline(v1.pipeline).version
    named = descriptor(contract_version)
    assert ReleaseDescriptor.parse(json.loads(named.to_json())).release_version == contract_version
    data = json.loads(named.to_json())
    data["releaseVersion"] = "sha256:short"
    with pytest.raises(InvalidRelease) as refused:
        ReleaseDescriptor.parse(data)
    assert refused.value.pointer == "/releaseVersion"


def test_relative_artifact_paths_are_relative_to_the_descriptor_file(tmp_path: Path) -> None:
    data = json.loads(descriptor().to_json())
    data["artifacts"][0]["uri"] = "greeting.zip"
    (tmp_path / "d.json").write_text(json.dumps(data))
    assert read_descriptor(tmp_path / "d.json").primary.uri == (tmp_path / "greeting.zip").as_uri()


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (lambda d: d["artifacts"][0].update(digest="md5:abc"), "/artifacts/0/digest"),
        (lambda d: d.update(artifacts=[]), "/artifacts"),
        (lambda d: d.update(releaseVersion="active"), "/releaseVersion"),
        (lambda d: d.update(contractVersion="sha256:" + "0" * 64), "/contractVersion"),
        (lambda d: d["contract"].update(pipelineId="org.other"), "/contract/pipelineId"),
        (lambda d: d["contract"].update(steps=[]), "/contract/steps"),
    ],
)
def test_a_defective_descriptor_is_refused_naming_the_field(change: Any, pointer: str) -> None:
    data = json.loads(descriptor().to_json())
    change(data)
    with pytest.raises(InvalidRelease) as refused:
        ReleaseDescriptor.parse(data).checked_contract()
    assert refused.value.pointer == pointer


# -- the registry ---------------------------------------------------------------------------------


async def test_the_digest_is_checked_once_at_registration_and_never_again(
    registry: Registry,
) -> None:
    artifacts = InMemoryArtifactReader({"mem://greeting/1.0.0.zip": CODE})
    release = descriptor()
    record = await registry.register_descriptor(release, artifacts, now_ms=10)
    assert record.primary_artifact_digest == sha256_digest(CODE)
    await registry.activate(PIPELINE_ID, "1.0.0", now_ms=11)
    replica = Registry(registry.table, active_ttl_s=0)  # nothing cached
    for reader in (registry, replica) * 25:
        assert (await reader.release(PIPELINE_ID, "1.0.0")).primary_artifact_digest
        assert (await reader.active_release(PIPELINE_ID)) is not None
    again = await registry.register_descriptor(release, artifacts, now_ms=12)
    assert again.registered_at_epoch_ms == 10
    assert artifacts.reads == ["mem://greeting/1.0.0.zip"]


async def test_a_registered_version_is_immutable(registry: Registry) -> None:
    artifacts = InMemoryArtifactReader(
        {"mem://greeting/1.0.0.zip": CODE, "mem://elsewhere.zip": b"other code"}
    )
    await registry.register_descriptor(descriptor(), artifacts, now_ms=1)
    other_code = descriptor(data=b"other code", uri="mem://elsewhere.zip")
    with pytest.raises(AlreadyExists) as refused:
        await registry.register_descriptor(other_code, artifacts, now_ms=2)
    assert refused.value.current.primary_artifact_digest == sha256_digest(CODE)
    with pytest.raises(AlreadyExists):  # another contract under the same version
        await registry.register_descriptor(descriptor(pipeline=v2.pipeline), artifacts, now_ms=3)
    assert artifacts.reads == ["mem://greeting/1.0.0.zip"]  # refused without reading anything
    # The same bytes kept somewhere else are the same release.
    moved = descriptor(uri="mem://moved.zip")
    assert (
        await registry.register_descriptor(moved, artifacts, now_ms=4)
    ).registered_at_epoch_ms == 1


async def test_a_contract_whose_hash_is_not_the_contract_version_is_refused(
    registry: Registry,
) -> None:
    artifacts = InMemoryArtifactReader({"mem://greeting/1.0.0.zip": CODE})
    lying = descriptor().model_copy(
        update={"contract_version": Contract.from_pipeline(v2.pipeline).version}
    )
    with pytest.raises(InvalidRelease) as refused:
        await registry.register_descriptor(lying, artifacts, now_ms=1)
    assert refused.value.pointer == "/contractVersion"
    assert not await registry.known_pipeline(PIPELINE_ID)
    assert artifacts.reads == []


async def test_without_its_contract_a_descriptor_takes_the_registered_one(
    registry: Registry,
) -> None:
    artifacts = InMemoryArtifactReader({"mem://greeting/1.0.0.zip": CODE})
    bare = descriptor(with_contract=False)
    with pytest.raises(InvalidRelease) as refused:  # none registered, and CODE is no zip
        await registry.register_descriptor(bare, artifacts, now_ms=1)
    assert refused.value.pointer == "/artifacts/0/uri"
    assert not await registry.known_pipeline(PIPELINE_ID)
    await registry.put_contract(Contract.from_pipeline(v1.pipeline))
    record = await registry.register_descriptor(bare, artifacts, now_ms=2)
    assert record.contract_version == Contract.from_pipeline(v1.pipeline).version


async def test_without_its_contract_a_descriptor_takes_the_one_in_its_artifact(
    registry: Registry, tmp_path: Path
) -> None:
    _, artifact = build_release(V1, "1.0.0", tmp_path)
    data = artifact.read_bytes()
    bare = descriptor(data=data, with_contract=False)
    record = await registry.register_descriptor(
        bare, InMemoryArtifactReader({bare.primary.uri: data}), now_ms=1
    )
    contract = Contract.from_pipeline(v1.pipeline)
    assert record.contract_version == contract.version
    assert await registry.contract(PIPELINE_ID, contract.version) == contract


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ({}, "no META-INF/pipeline/pipeline-contract.json"),
        ({TPF_CONTRACT: b"{"}, "readable"),
        ({TPF_CONTRACT: b'{"pipelineId": "x", "steps": []}'}, "no 'tpfContract'"),
        ({TPF_CONTRACT: b'{"tpfContract": {"pipelineId": 3}}'}, "not a usable contract"),
        ("v2", "hashes to"),
    ],
)
async def test_an_artifact_without_the_descriptors_contract_registers_nothing(
    registry: Registry, tmp_path: Path, entries: Any, reason: str
) -> None:
    if entries == "v2":  # another pipeline version's artifact under v1's descriptor
        _, artifact = build_release(V2, "1.0.0", tmp_path)
        data = artifact.read_bytes()
    else:
        data = zip_files(entries)
    bare = descriptor(data=data, with_contract=False)
    with pytest.raises(InvalidRelease, match=reason) as refused:
        await registry.register_descriptor(
            bare, InMemoryArtifactReader({bare.primary.uri: data}), now_ms=1
        )
    assert refused.value.pointer == "/artifacts/0/uri"
    assert not await registry.known_pipeline(PIPELINE_ID)


async def test_an_artifact_that_is_not_what_the_descriptor_says_registers_nothing(
    registry: Registry,
) -> None:
    tampered = InMemoryArtifactReader({"mem://greeting/1.0.0.zip": CODE + b"!"})
    with pytest.raises(InvalidRelease) as refused:
        await registry.register_descriptor(descriptor(), tampered, now_ms=1)
    assert refused.value.pointer == "/artifacts/0/digest"
    missing = InMemoryArtifactReader()
    with pytest.raises(InvalidRelease) as unreadable:
        await registry.register_descriptor(descriptor(), missing, now_ms=1)
    assert unreadable.value.pointer == "/artifacts/0/uri"
    assert not await registry.known_pipeline(PIPELINE_ID)
    assert await registry.releases(PIPELINE_ID) == []


async def test_releases_are_listed_newest_first_with_the_active_one_marked(
    registry: Registry,
) -> None:
    artifacts = InMemoryArtifactReader(
        {f"mem://greeting/{v}.zip": CODE for v in ("1.0.0", "2.0.0", "10.0.0")}
    )
    for at, (version, pipeline) in enumerate(
        [("1.0.0", v1.pipeline), ("2.0.0", v2.pipeline), ("10.0.0", v2.pipeline)], start=1
    ):
        release = descriptor(version, pipeline=pipeline)
        await registry.register_descriptor(release, artifacts, now_ms=at)
    await registry.activate(PIPELINE_ID, "2.0.0", now_ms=100)
    await registry.activate(PIPELINE_ID, "1.0.0", now_ms=200)

    listed = await registry.releases(PIPELINE_ID)
    assert [r.release_version for r in listed] == ["10.0.0", "2.0.0", "1.0.0"]
    assert [r.activated_at_epoch_ms for r in listed] == [None, None, 200]
    events = await registry.activations(PIPELINE_ID)
    assert [(a.release_version, a.activated_at_epoch_ms) for a in events] == [
        ("1.0.0", 200),
        ("2.0.0", 100),
    ]


async def test_releases_registered_from_code_keep_working(registry: Registry) -> None:
    await register_pipeline(registry, v1.pipeline, "1.0.0", now_ms=1)
    active = await registry.active_release(PIPELINE_ID)
    assert active is not None and active.artifacts == () and active.primary_artifact_id is None
    with pytest.raises(AlreadyExists):  # a descriptor under the same version is other content
        artifacts = InMemoryArtifactReader({"mem://greeting/1.0.0.zip": CODE})
        await registry.register_descriptor(descriptor(), artifacts, now_ms=2)


# -- artifact readers ---------------------------------------------------------------------------


async def test_a_file_artifact_is_read_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(bytes(range(256)) * 10)
    reader = FileArtifactReader(chunk_size=100)
    chunks = [c async for c in reader.read(path.as_uri())]
    assert len(chunks) == 26 and b"".join(chunks) == path.read_bytes()
    assert await artifact_digest(reader, path.as_uri()) == sha256_digest(path.read_bytes())


async def test_unreadable_artifacts_are_reported_as_such(tmp_path: Path) -> None:
    readers = ArtifactReaders({"file": FileArtifactReader(root=tmp_path / "releases")})
    outside = tmp_path / "secret"
    outside.write_bytes(b"x")
    for uri in (
        (tmp_path / "releases" / "missing.zip").as_uri(),
        outside.as_uri(),
        "file://elsewhere/a.zip",
        "s3://bucket/key",
    ):
        with pytest.raises(ArtifactUnavailable):
            await artifact_digest(readers, uri)
