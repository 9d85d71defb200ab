"""The release routes of the admin API, over HTTP, on the in-memory coordinator with real
artifacts built on disk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator.api import create_app
from coordinator.releases_api import releases_router
from coordinator.testing import InMemoryCoordinator
from examples.greeting import PIPELINE_ID
from tpf.artifacts import artifact_readers
from tpf.codec import encode_envelope
from tpf.errors import Conflict
from tpf.registry import ReleaseRecord
from tpfctl.release_build import build_release

CONTROL, ADMIN = "control-token", "admin-token"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_CLIENT = {"Authorization": f"Bearer {CONTROL}"}
V1, V2 = "examples.greeting.v1:pipeline", "examples.greeting.v2:pipeline"
PIPELINE = f"/tpf/admin/tenants/acme/pipelines/{PIPELINE_ID}"


class Activations:
    """An ``on_activate`` hook that records what the registry looked like when it ran."""

    def __init__(self, coordinator: InMemoryCoordinator) -> None:
        self.coordinator = coordinator
        self.calls: list[tuple[str, str | None]] = []
        self.refuse = False

    async def __call__(self, record: ReleaseRecord) -> None:
        active = await self.coordinator.registry.active_release(record.pipeline_id, "acme")
        self.calls.append((record.release_version, active.release_version if active else None))
        if self.refuse:
            raise Conflict("the release queue cannot be created", code="RELEASE_NOT_READY")


@pytest.fixture
def coordinator() -> InMemoryCoordinator:
    return InMemoryCoordinator.create()


@pytest.fixture
def hook(coordinator: InMemoryCoordinator) -> Activations:
    return Activations(coordinator)


@pytest.fixture
async def http(
    coordinator: InMemoryCoordinator, hook: Activations
) -> AsyncIterator[httpx.AsyncClient]:
    router = releases_router(coordinator.registry, artifact_readers(), on_activate=hook)
    app = create_app(
        coordinator.service, control_plane_token=CONTROL, admin_token=ADMIN, routers=[router]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client


def built(tmp_path: Path, reference: str, version: str) -> tuple[Path, dict[str, Any]]:
    descriptor_path, _ = build_release(reference, version, tmp_path / version)
    return descriptor_path, json.loads(descriptor_path.read_text())


async def register(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"{PIPELINE}/releases/register", json=body, headers=AS_ADMIN)


async def test_release_routes_need_the_admin_token(http: httpx.AsyncClient) -> None:
    for headers in ({}, AS_CLIENT, {"Authorization": "Bearer wrong"}):
        assert (await http.get(f"{PIPELINE}/releases", headers=headers)).status_code == 401
        route = f"{PIPELINE}/releases/register"
        assert (await http.post(route, json={}, headers=headers)).status_code == 401


async def test_a_release_registers_from_its_body_or_from_a_descriptor_path(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    _, one = built(tmp_path, V1, "1.0.0")
    response = await register(http, one)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["pipelineId"] == PIPELINE_ID
    assert record["releaseVersion"] == "1.0.0"
    assert record["contractVersion"] == one["contractVersion"]
    assert record["primaryArtifactId"] == "examples.greeting"
    assert record["primaryArtifactDigest"] == one["artifacts"][0]["digest"]
    assert isinstance(record["registeredAtEpochMs"], int)
    assert record["artifacts"][0]["uri"] == one["artifacts"][0]["uri"]

    two_path, two = built(tmp_path, V2, "2.0.0")
    by_path = await register(http, {"releaseDescriptorPath": str(two_path)})
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["contractVersion"] == two["contractVersion"] != one["contractVersion"]

    again = await register(http, one)  # idempotent: the stored record comes back
    assert again.status_code == 200 and again.json() == record


async def test_the_same_version_with_other_content_is_a_conflict(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    _, one = built(tmp_path, V1, "1.0.0")
    assert (await register(http, one)).status_code == 200
    _, other = built(tmp_path / "other", V2, "1.0.0")
    refused = await register(http, other)
    assert (refused.status_code, refused.json()["errorCode"]) == (409, "RELEASE_EXISTS")
    shown = await http.get(f"{PIPELINE}/releases/1.0.0", headers=AS_ADMIN)
    assert shown.json()["contractVersion"] == one["contractVersion"]


@pytest.mark.parametrize(
    ("spoil", "pointer"),
    [
        (lambda d, p: d.update(pipelineId="org.example.other"), "/pipelineId"),
        (lambda d, p: d["artifacts"][0].update(digest="sha256:abc"), "/artifacts/0/digest"),
        (lambda d, p: d.pop("contractVersion"), "/contractVersion"),
        (lambda d, p: p.write_bytes(p.read_bytes() + b"\0"), "/artifacts/0/digest"),
        (lambda d, p: p.unlink(), "/artifacts/0/uri"),
        (lambda d, p: d["artifacts"][0].update(uri="ftp://host/a.zip"), "/artifacts/0/uri"),
        (lambda d, p: d["contract"]["steps"].pop(), "/contract"),
    ],
)
async def test_a_bad_descriptor_or_artifact_is_refused_with_the_field_at_fault(
    http: httpx.AsyncClient, tmp_path: Path, spoil: Any, pointer: str
) -> None:
    descriptor_path, body = built(tmp_path, V1, "1.0.0")
    spoil(body, descriptor_path.with_suffix("").with_suffix(".zip"))
    refused = await register(http, body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["pointer"].startswith(pointer), refused.json()
    listed = await http.get(f"{PIPELINE}/releases", headers=AS_ADMIN)
    assert listed.json() == []  # nothing registered, not even the contract


async def test_a_descriptor_path_that_cannot_be_read_is_refused(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    (tmp_path / "not-json.json").write_text("{")
    for path in (str(tmp_path / "missing.json"), str(tmp_path / "not-json.json"), ""):
        refused = await register(http, {"releaseDescriptorPath": path})
        assert refused.status_code == 400, refused.text
        assert refused.json()["pointer"] == "/releaseDescriptorPath"
    not_json = await http.post(f"{PIPELINE}/releases/register", content=b"[", headers=AS_ADMIN)
    assert not_json.status_code == 400


async def test_activation_runs_the_hook_first_then_moves_new_submissions(
    http: httpx.AsyncClient, coordinator: InMemoryCoordinator, hook: Activations, tmp_path: Path
) -> None:
    for reference, version in ((V1, "1.0.0"), (V2, "2.0.0")):
        assert (await register(http, built(tmp_path, reference, version)[1])).status_code == 200
    none = await http.get(f"{PIPELINE}/releases/active", headers=AS_ADMIN)
    assert (none.status_code, none.json()["errorCode"]) == (404, "NOT_FOUND")

    activated = await http.post(f"{PIPELINE}/releases/1.0.0/activate", headers=AS_ADMIN)
    assert activated.status_code == 200, activated.text
    assert isinstance(activated.json()["activatedAtEpochMs"], int)
    first = await submit(http, "Ada")

    assert (await http.post(f"{PIPELINE}/releases/2.0.0/activate", headers=AS_ADMIN)).is_success
    second = await submit(http, "Bob")
    # The hook saw the registry before each activation took effect.
    assert hook.calls == [("1.0.0", None), ("2.0.0", "1.0.0")]

    active = (await http.get(f"{PIPELINE}/releases/active", headers=AS_ADMIN)).json()
    assert active["releaseVersion"] == "2.0.0"
    pinned = {
        e: (await coordinator.service.status("acme", e)).release_version for e in (first, second)
    }
    assert pinned == {first: "1.0.0", second: "2.0.0"}

    listed = (await http.get(f"{PIPELINE}/releases", headers=AS_ADMIN)).json()
    assert [(r["releaseVersion"], r["active"]) for r in listed] == [  # oldest first
        ("1.0.0", False),
        ("2.0.0", True),
    ]
    events = (await http.get(f"{PIPELINE}/activations", headers=AS_ADMIN)).json()
    assert [e["releaseVersion"] for e in events] == ["2.0.0", "1.0.0"]


async def test_a_refusing_hook_activates_nothing(
    http: httpx.AsyncClient, hook: Activations, tmp_path: Path
) -> None:
    assert (await register(http, built(tmp_path, V1, "1.0.0")[1])).status_code == 200
    hook.refuse = True
    refused = await http.post(f"{PIPELINE}/releases/1.0.0/activate", headers=AS_ADMIN)
    assert (refused.status_code, refused.json()["errorCode"]) == (409, "RELEASE_NOT_READY")
    assert (await http.get(f"{PIPELINE}/releases/active", headers=AS_ADMIN)).status_code == 404
    assert (await http.get(f"{PIPELINE}/activations", headers=AS_ADMIN)).json() == []


async def test_unknown_releases_are_not_found(
    http: httpx.AsyncClient, hook: Activations, tmp_path: Path
) -> None:
    assert (await http.get(f"{PIPELINE}/releases", headers=AS_ADMIN)).json() == []
    assert (await http.get(f"{PIPELINE}/releases/9.9.9", headers=AS_ADMIN)).status_code == 404
    activate = await http.post(f"{PIPELINE}/releases/9.9.9/activate", headers=AS_ADMIN)
    assert activate.status_code == 404
    assert hook.calls == []  # nothing to prepare for a release that does not exist
    assert (await register(http, built(tmp_path, V1, "1.0.0")[1])).status_code == 200
    assert (await http.get(f"{PIPELINE}/releases/9.9.9", headers=AS_ADMIN)).status_code == 404


async def submit(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post(
        "/tpf/control-plane/tenants/acme/executions",
        json={
            "pipelineId": PIPELINE_ID,
            "inputShape": "UNI",
            "inputPayload": encode_envelope("GreetingRequest", {"name": name}),
            "idempotencyKey": f"greet-{name}",
        },
        headers=AS_CLIENT,
    )
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id
