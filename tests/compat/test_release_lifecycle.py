"""TPF's release and worker scripts against our admin API: ``register-and-activate-release.sh``
registers a release from a descriptor path and activates it, then registers a one-process
worker for it (``tpf_client.SELF_HOST`` at ``tpf_client.UPSTREAM``); operators heartbeat, list
and drain workers. The descriptor is ours (TPF's JAR cannot run here); the requests, the
release version (TPF's default: the contract version) and the worker's body are TPF's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat import tpf_client as tpf
from tests.substrates import unique_stack
from tpf.contract import Contract
from tpf.loading import load_pipeline
from tpfctl.release_build import build_release
from tpfctl.stack import OwnedStack, StackSpec, owned_stack

RESTAURANT = "examples.restaurant_approval:restaurant_approval"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedStack]:
    spec = StackSpec(
        stack=unique_stack(),
        profile="test",
        workers=0,
        pipelines=(RESTAURANT,),
        control_plane_token=tpf.TOKEN,
        admin_token=tpf.TOKEN,
    )
    with owned_stack(spec, workdir=tmp_path_factory.mktemp("releases")) as stack:
        yield stack


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 400, (response.status_code, response.text)
    return response.json() if response.content else None


def test_a_release_is_registered_activated_and_served_by_a_registered_worker(
    fleet: OwnedStack, tmp_path: Path
) -> None:
    contract_version = Contract.from_pipeline(load_pipeline(RESTAURANT)).version
    descriptor, _ = build_release(RESTAURANT, contract_version, tmp_path)
    admin = f"/tpf/admin/tenants/{tpf.TENANT}/pipelines/{tpf.PIPELINE}"
    headers = {"Accept": "application/json", "Authorization": f"Bearer {tpf.TOKEN}"}
    with httpx.Client(base_url=fleet.api_url, headers=headers, timeout=10) as http:
        registered = ok(
            http.post(f"{admin}/releases/register", json={"releaseDescriptorPath": str(descriptor)})
        )
        assert (registered["releaseVersion"], registered["contractVersion"]) == (
            contract_version,
            contract_version,
        )
        assert registered["status"] == "REGISTERED" and registered["tenantId"] == tpf.TENANT
        activated = ok(http.post(f"{admin}/releases/{contract_version}/activate"))  # no body
        assert activated["status"] == "ACTIVE"
        active = ok(http.get(f"{admin}/releases/active"))
        assert (active["releaseVersion"], active["status"]) == (contract_version, "ACTIVE")
        shown = ok(http.get(f"{admin}/releases/{contract_version}"))
        assert shown["status"] == "ACTIVE"
        # Activated for this tenant alone: the default (every other tenant) is unmoved.
        other = ok(http.get(f"/tpf/admin/tenants/default/pipelines/{tpf.PIPELINE}/releases/active"))
        assert other["releaseVersion"] == "1.0.0"

        body = {
            "workerId": "restaurant-local-worker",
            "contractVersion": registered["contractVersion"],
            "releaseVersion": registered["releaseVersion"],
            "protocol": "local",
            "endpoint": "in-process",
            "artifactId": registered.get("primaryArtifactId", ""),
            "artifactDigest": registered.get("primaryArtifactDigest", ""),
        }
        worker = ok(http.post(f"{admin}/workers/register", json=body))
        assert (worker["workerId"], worker["protocol"], worker["releaseVersion"]) == (
            "restaurant-local-worker",
            "local",
            contract_version,
        )
        assert worker["state"] == "HEALTHY"
        beat = ok(http.post(f"{admin}/workers/restaurant-local-worker/heartbeat"))
        assert beat["state"] == "HEALTHY"
        listed = ok(http.get(f"{admin}/workers", params={"releaseVersion": contract_version}))
        assert [w["workerId"] for w in listed] == ["restaurant-local-worker"]
        drained = ok(http.post(f"{admin}/workers/restaurant-local-worker/drain"))
        assert drained["state"] == "DRAINING"


def test_tpfs_release_tooling_reads_our_artifact_and_its_descriptor_registers(
    fleet: OwnedStack, tmp_path: Path
) -> None:
    """``create-release`` on what ``tpf release build`` made, then ``register-activate``."""
    _, artifact = build_release(RESTAURANT, "7.0.0", tmp_path)
    descriptor = tpf.create_release(artifact, tpf.PIPELINE, "7.0.0")
    assert descriptor["artifacts"][0]["stepIds"] == [s.id for s in load_pipeline(RESTAURANT).steps]
    path = tmp_path / "pipeline-release.json"
    path.write_text(json.dumps(descriptor, indent=2, sort_keys=True))
    admin = f"/tpf/admin/tenants/tpf-tooling/pipelines/{tpf.PIPELINE}"
    headers = {"Authorization": f"Bearer {tpf.TOKEN}"}
    with httpx.Client(base_url=fleet.api_url, headers=headers, timeout=10) as http:
        registered = ok(
            http.post(f"{admin}/releases/register", json={"releaseDescriptorPath": str(path)})
        )
        assert registered["releaseVersion"] == "7.0.0"
        assert registered["primaryArtifactDigest"] == descriptor["artifacts"][0]["digest"]
        ok(http.post(f"{admin}/releases/7.0.0/activate"))
        assert ok(http.get(f"{admin}/releases/active"))["releaseVersion"] == "7.0.0"


def test_a_tpf_descriptor_of_a_pipeline_never_seen_registers_from_its_artifact(
    fleet: OwnedStack, tmp_path: Path
) -> None:
    """TPF's descriptors carry no contract: the coordinator reads it from the artifact."""
    greeting = "examples.greeting.v1:pipeline"
    pipeline_id = load_pipeline(greeting).id
    _, artifact = build_release(greeting, "1.0.0", tmp_path)
    path = tmp_path / "pipeline-release.json"
    path.write_text(json.dumps(tpf.create_release(artifact, pipeline_id, "1.0.0")))
    admin = f"/tpf/admin/tenants/{tpf.TENANT}/pipelines/{pipeline_id}"
    headers = {"Authorization": f"Bearer {tpf.TOKEN}"}
    with httpx.Client(base_url=fleet.api_url, headers=headers, timeout=10) as http:
        assert ok(http.get(f"{admin}/releases")) == []
        registered = ok(
            http.post(f"{admin}/releases/register", json={"releaseDescriptorPath": str(path)})
        )
        assert (
            registered["contractVersion"] == Contract.from_pipeline(load_pipeline(greeting)).version
        )
        assert [r["releaseVersion"] for r in ok(http.get(f"{admin}/releases"))] == ["1.0.0"]
