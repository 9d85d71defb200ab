"""Rolling out a new release while executions are in flight (worker processes, real queues).

Release 1.0.0 of ``org.tests.rollout`` runs with one worker. Three of its executions are caught
mid-flight — one running, one parked on its await, one waiting to retry — when 2.0.0 is built,
registered and activated through the CLI. Every 1.0.0 execution then finishes on the 1.0.0
worker, every new one is pinned to 2.0.0 and runs on its worker, and a submission is refused
with 503 while no 2.0.0 worker is healthy. Finally an operator drains a worker: it finishes
what it holds and leaves, and a REST worker takes the release over signed HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra._queues import url_of
from infra.resources import work_queue
from tests.e2e.fleets import running_fleet
from tests.waiting import wait_until
from tpf.substrate import sync_client
from tpfctl.stack import OwnedStack, free_port

ROLLOUT = "org.tests.rollout"
V1, V2 = "tests.e2e.pipelines:rollout_v1", "tests.e2e.pipelines:rollout_v2"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["embedded"])
def fleet(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    """Overrides the shared ``fleet``: one worker of release 1.0.0 (``api`` comes with it)."""
    workdir = tmp_path_factory.mktemp("rollout")
    yield from running_fleet(request, markers, workdir, pipelines=(V1,), workers=1)


@pytest.fixture
def admin(fleet: OwnedStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{fleet.api_url}/tpf/admin/tenants/acme/pipelines/{ROLLOUT}",
        headers={"Authorization": f"Bearer {fleet.admin_token}"},
        timeout=10,
    ) as client:
        yield client


def tpf(fleet: OwnedStack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **fleet.env, "TPF_API_URL": fleet.api_url}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tpfctl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def submit(api: httpx.Client, visit: dict[str, Any]) -> httpx.Response:
    return api.post(
        "/executions",
        json={
            "pipelineId": ROLLOUT,
            "inputShape": "UNI",
            "inputPayload": {"payloadTypeId": "Visit", "payload": json.dumps(visit)},
        },
    )


def status(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/executions/{execution_id}").json()
    return body


def reached(api: httpx.Client, execution_id: str, wanted: str, **fields: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = status(api, execution_id)
        ok = found["status"] == wanted and all(found[k] >= v for k, v in fields.items())
        return found if ok else None

    found: dict[str, Any] = wait_until(check, timeout=60)
    return found


def sign_in(api: httpx.Client, execution_id: str) -> None:
    def pending() -> dict[str, Any] | None:
        listed = api.get("/interactions/pending", params={"stepId": "SignIn"}).json()
        return next((i for i in listed if i["executionId"] == execution_id), None)

    interaction = wait_until(pending, timeout=60)
    answer = api.post(
        "/interactions/complete",
        json={
            "interactionId": interaction["interactionId"],
            "responsePayload": {"payloadTypeId": "Reply", "payload": '{"answer": "hi"}'},
        },
    )
    assert answer.status_code == 200, answer.text


def farewell(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    reached(api, execution_id, "SUCCEEDED")
    result = api.get(f"/executions/{execution_id}/result").json()
    body: dict[str, Any] = json.loads(result["resultPayload"]["payload"])
    return body


def worker_pid(fleet: OwnedStack, name: str) -> int:
    member = next(m for m in fleet.fleet.members if m.name == name)
    assert member.process is not None
    return member.process.pid


def healthy_workers(admin: httpx.Client, release: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = admin.get("/workers").json()
    return [w for w in listed if w["releaseVersion"] == release and w["state"] == "HEALTHY"]


def test_in_flight_executions_finish_on_their_release_and_new_ones_run_the_new_one(
    fleet: OwnedStack,
    api: httpx.Client,
    admin: httpx.Client,
    markers: Path,
    tmp_path: Path,
) -> None:
    # Three 1.0.0 executions, caught running, parked and waiting to retry.
    running = submit(api, {"name": "running", "seconds": 6}).json()["executionId"]
    parked = submit(api, {"name": "parked"}).json()["executionId"]
    retrying = submit(api, {"name": "retrying", "fail_attempts": 2, "retry_seconds": 4}).json()[
        "executionId"
    ]
    reached(api, parked, "WAITING_EXTERNAL")
    reached(api, retrying, "WAIT_RETRY", attempt=1)
    reached(api, running, "RUNNING")

    # Build, register and activate 2.0.0 through the CLI, as an operator would.
    built = tpf(fleet, "release", "build", V2, "--version", "2.0.0", "--out", ".", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    [descriptor] = tmp_path.glob("*.release.json")
    registered = tpf(fleet, "release", "register", str(descriptor), cwd=tmp_path)
    assert registered.returncode == 0, registered.stderr
    activated = tpf(fleet, "release", "activate", ROLLOUT, "2.0.0", cwd=tmp_path)
    assert activated.returncode == 0, activated.stderr

    # No healthy 2.0.0 worker yet: a submission that would be pinned to it is refused.
    refused = submit(api, {"name": "too-early"})
    assert refused.status_code == 503, refused.text
    assert refused.json()["errorCode"] == "NO_HEALTHY_WORKER"

    member = fleet.fleet.add("worker", "worker-v2", "--pipeline", V2, "--release", "2.0.0")
    fleet.fleet.start(member)
    wait_until(lambda: healthy_workers(admin, "2.0.0"), timeout=60)
    new = submit(api, {"name": "new"}).json()["executionId"]
    assert status(api, new)["releaseVersion"] == "2.0.0"
    for execution_id in (running, parked, retrying):
        assert status(api, execution_id)["releaseVersion"] == "1.0.0"

    for execution_id in (running, parked, retrying, new):
        sign_in(api, execution_id)

    v1_pid, v2_pid = worker_pid(fleet, "worker-1"), worker_pid(fleet, "worker-v2")
    for execution_id in (running, parked, retrying):
        left = farewell(api, execution_id)
        assert (left["release"], left["pid"]) == ("1", v1_pid)
    assert farewell(api, new) == {"name": "new", "release": "2", "pid": v2_pid}
    # No command ever ran on a worker of another release: each release's steps left markers
    # only for its own executions.
    for execution_id in (running, parked, retrying):
        assert not list(markers.glob(f"*-2.{execution_id}.*"))
    assert len(list(markers.glob(f"arrive-1.{retrying}.*"))) == 3  # two failures, then on
    assert not list(markers.glob(f"*-1.{new}.*"))


def test_a_drained_worker_finishes_what_it_holds_and_takes_nothing_new(
    fleet: OwnedStack, api: httpx.Client, admin: httpx.Client, tmp_path: Path
) -> None:
    wait_until(lambda: healthy_workers(admin, "2.0.0"), timeout=60)
    [worker] = healthy_workers(admin, "2.0.0")
    held = submit(api, {"name": "held", "seconds": 3}).json()["executionId"]
    reached(api, held, "RUNNING")

    drained = tpf(fleet, "workers", "drain", ROLLOUT, worker["workerId"], "--json", cwd=tmp_path)
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["state"] == "DRAINING"

    member = next(m for m in fleet.fleet.members if m.name == "worker-v2")
    assert member.process is not None
    assert member.process.wait(timeout=60) == 0  # it leaves once what it held is done
    reached(api, held, "WAITING_EXTERNAL")  # the held transition ran to its await
    refused = submit(api, {"name": "after-drain"})
    assert refused.status_code == 503, refused.text

    # Answering the await dispatches the next transition; no worker is left to take it.
    sign_in(api, held)
    sqs = sync_client(fleet.settings, "sqs", endpoints=fleet.endpoints)
    queue = sqs.get_queue_url(QueueName=fleet.settings.resource(work_queue(ROLLOUT, "2.0.0")))

    def waiting_in_queue() -> bool:
        found = sqs.get_queue_attributes(
            QueueUrl=queue["QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(found["Attributes"]["ApproximateNumberOfMessages"]) >= 1

    wait_until(waiting_in_queue, timeout=30)
    assert status(api, held)["status"] == "RUNNING"


def test_a_rest_worker_takes_over_the_release_over_signed_http(
    fleet: OwnedStack, api: httpx.Client, admin: httpx.Client
) -> None:
    port = free_port()
    member = fleet.fleet.add(
        "worker", "worker-rest", "--pipeline", V2, "--release", "2.0.0", "--rest-port", str(port)
    )
    fleet.fleet.start(member)
    [worker] = wait_until(lambda: healthy_workers(admin, "2.0.0"), timeout=60)  # type: ignore[misc]
    assert (worker["protocol"], worker["endpoint"]) == ("rest", f"http://127.0.0.1:{port}")

    visit = submit(api, {"name": "over-http"}).json()["executionId"]
    sign_in(api, visit)
    assert farewell(api, visit) == {
        "name": "over-http",
        "release": "2",
        "pid": worker_pid(fleet, "worker-rest"),
    }


def test_a_release_nothing_needs_any_more_is_retired_with_its_queue(
    fleet: OwnedStack, tmp_path: Path
) -> None:
    active = tpf(fleet, "release", "retire", ROLLOUT, "2.0.0", cwd=tmp_path)
    assert active.returncode == 2 and "active release" in active.stderr

    retired = tpf(fleet, "release", "retire", ROLLOUT, "1.0.0", cwd=tmp_path)
    assert retired.returncode == 0, retired.stderr
    sqs = sync_client(fleet.settings, "sqs", endpoints=fleet.endpoints)
    assert url_of(sqs, fleet.settings.resource(work_queue(ROLLOUT, "1.0.0"))) is None
