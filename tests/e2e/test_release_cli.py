"""`tpf release` in subprocesses: build artifacts, then register, activate and list them through
a coordinator's admin API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from coordinator.api import create_app
from coordinator.releases_api import releases_router
from coordinator.testing import InMemoryCoordinator
from examples.greeting import PIPELINE_ID
from tests.e2e.fleets import running_fleet
from tests.e2e.test_cli import clean_env, tpf
from tests.waiting import wait_until
from tpf.artifacts import artifact_readers
from tpf.releases import read_descriptor
from tpfctl.stack import OwnedStack, free_port

# Each `tpf` call is a fresh process that imports the whole command; a loaded machine is slow.
pytestmark = pytest.mark.timeout(240)

V1, V2 = "examples.greeting.v1:pipeline", "examples.greeting.v2:pipeline"
ADMIN = "release-cli-admin-token"


def build(env: dict[str, str], reference: str, version: str, out: Path, *extra: str) -> Path:
    done = tpf(
        "release", "build", reference, "--version", version, "--out", str(out), *extra, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stem = f"{PIPELINE_ID}-{version}"
    assert (out / f"{stem}.zip").is_file()
    return out / f"{stem}.release.json"


def one_line_error(done: object) -> str:
    assert getattr(done, "returncode", None) == 2, done
    stderr: str = getattr(done, "stderr", "")
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    return stderr


def test_building_twice_writes_the_same_artifact_and_a_descriptor(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    first = read_descriptor(build(env, V1, "1.0.0", tmp_path / "a"))
    second = read_descriptor(build(env, V1, "1.0.0", tmp_path / "b"))
    assert first.primary.digest == second.primary.digest
    assert first.primary.uri == (tmp_path / "a" / f"{PIPELINE_ID}-1.0.0.zip").as_uri()
    assert first.pipeline_id == PIPELINE_ID and first.contract is not None

    one_line_error(tpf("release", "build", "examples.nothing:pipeline", "--version", "1", env=env))
    # Talking to a coordinator needs one: without a stack, one line says so.
    one_line_error(tpf("release", "list", PIPELINE_ID, env=env))


@pytest.fixture
def coordinator_api() -> Iterator[str]:
    """A coordinator API with the release routes, over the in-memory coordinator."""
    coordinator = InMemoryCoordinator.create()
    router = releases_router(coordinator.registry, artifact_readers())
    app = create_app(
        coordinator.service, control_plane_token="unused", admin_token=ADMIN, routers=[router]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="release-api", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_releases_are_registered_activated_and_listed_from_the_cli(
    coordinator_api: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, TPF_API_URL=coordinator_api, TPF_ADMIN_TOKEN=ADMIN)
    exercise_the_release_commands(env, tmp_path)


def exercise_the_release_commands(env: dict[str, str], tmp_path: Path, *build_extra: str) -> None:
    def release(*args: str) -> str:
        done = tpf("release", *args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    one = build(env, V1, "1.0.0", tmp_path / "one", *build_extra)
    two = build(env, V2, "2.0.0", tmp_path / "two", *build_extra)
    registered = json.loads(release("register", str(one), "--json"))
    assert registered["releaseVersion"] == "1.0.0"
    assert registered["primaryArtifactDigest"] == read_descriptor(one).primary.digest
    assert "registered release 2.0.0" in release("register", str(two))
    assert "registered release 1.0.0" in release("register", str(one))  # again: a no-op

    # Other code under a registered version is refused, and says why in one line. (Built
    # locally: the release bucket already refuses another build under a version it holds.)
    clash = build(env, V2, "1.0.0", tmp_path / "clash")
    refused = one_line_error(tpf("release", "register", str(clash), env=env))
    assert "409" in refused and "other content" in refused

    release("activate", PIPELINE_ID, "1.0.0")
    assert "activated release 2.0.0" in release("activate", PIPELINE_ID, "2.0.0")
    listed = json.loads(release("list", PIPELINE_ID, "--json"))
    assert [(r["releaseVersion"], r["active"]) for r in listed] == [
        ("2.0.0", True),
        ("1.0.0", False),
    ]
    table = release("list", PIPELINE_ID)
    assert registered["contractVersion"].removeprefix("sha256:")[:12] in table
    active_row = next(line for line in table.splitlines() if "2.0.0" in line)
    assert "*" in active_row

    unknown = one_line_error(tpf("release", "activate", PIPELINE_ID, "9.9.9", env=env))
    assert "404" in unknown


def test_a_tampered_artifact_is_refused_by_the_coordinator(
    coordinator_api: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, TPF_API_URL=coordinator_api, TPF_ADMIN_TOKEN=ADMIN)
    descriptor = build(env, V1, "1.0.0", tmp_path)
    artifact = tmp_path / f"{PIPELINE_ID}-1.0.0.zip"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    refused = one_line_error(tpf("release", "register", str(descriptor), env=env))
    assert "400" in refused and "digest" in refused


@pytest.fixture(scope="module", params=["embedded"])
def fleet(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    workdir = tmp_path_factory.mktemp("fleet")
    yield from running_fleet(request, markers, workdir, pipelines=("examples.orders:orders",))


def test_the_readme_rollout_walkthrough_works_as_written(fleet: OwnedStack, tmp_path: Path) -> None:
    """README, "Rolling out a new release": the same commands, in the same order."""
    env = clean_env(tmp_path, **fleet.env, TPF_API_URL=fleet.api_url)

    def run(*args: str) -> str:
        done = tpf(*args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def submit(value: dict[str, object]) -> str:
        return str(
            json.loads(run("submit", PIPELINE_ID, "-i", json.dumps(value), "--json"))["executionId"]
        )

    def start_worker(reference: str, release: str) -> None:
        name = f"greeting-{release}"
        fleet.fleet.start(
            fleet.fleet.add("worker", name, "--pipeline", reference, "--release", release)
        )

        def healthy() -> bool:
            listed = json.loads(run("workers", "list", PIPELINE_ID, "--json"))
            return any(w["releaseVersion"] == release and w["state"] == "HEALTHY" for w in listed)

        wait_until(healthy, timeout=60)

    def result(execution_id: str) -> dict[str, object] | None:
        shown = json.loads(run("status", execution_id, "--json"))
        if shown["status"] != "SUCCEEDED":
            return None
        answer: dict[str, object] = json.loads(shown["result"]["payload"])
        return answer

    dist = tmp_path / "dist"
    build(env, V1, "1.0.0", dist, "--upload")
    run("release", "register", str(dist / f"{PIPELINE_ID}-1.0.0.release.json"))
    run("release", "activate", PIPELINE_ID, "1.0.0")
    start_worker(V1, "1.0.0")
    ada = submit({"name": "Ada", "delayMs": 6000})

    build(env, V2, "2.0.0", dist, "--upload")
    run("release", "register", str(dist / f"{PIPELINE_ID}-2.0.0.release.json"))
    run("release", "activate", PIPELINE_ID, "2.0.0")
    refused = tpf("submit", PIPELINE_ID, "-i", '{"name": "Grace"}', env=env)
    assert refused.returncode == 2 and "503" in refused.stderr, refused.stderr
    start_worker(V2, "2.0.0")
    grace = submit({"name": "Grace"})

    assert wait_until(lambda: result(ada), timeout=60) == {
        "greeting": "Hello, Ada.",
        "release": "1",
    }
    assert wait_until(lambda: result(grace), timeout=60) == {
        "greeting": "Hello, Grace! Welcome back.",
        "release": "2",
    }
    listed = json.loads(run("release", "list", PIPELINE_ID, "--json"))
    assert [(r["releaseVersion"], r["active"]) for r in listed] == [
        ("2.0.0", True),
        ("1.0.0", False),
    ]
    assert all(r["artifacts"][0]["uri"].startswith("s3://") for r in listed)
