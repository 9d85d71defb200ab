"""The worker directory over the in-memory table, and its admin routes over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from coordinator.api import create_app
from coordinator.testing import InMemoryCoordinator
from coordinator.workers import WorkerDirectory, WorkerRegistration
from coordinator.workers.memory import InMemoryEventSourceMappings, InMemoryWorkerTable
from coordinator.workers_api import workers_router
from tpf.errors import Conflict, NotFound
from tpf.registry.worker_items import DRAIN_ATTRIBUTE, worker_item_key
from tpf.wire import HostedPipeline, WorkerPresence, WorkerState

PIPELINE = "org.tests.workers"
CONTRACT = "sha256:" + "c" * 64
STALE_AFTER = timedelta(seconds=15)
T0 = 1_700_000_000_000


def presence(
    worker_id: str = "w1",
    *,
    release: str = "1.0.0",
    state: WorkerState = "RUNNING",
    pipelines: tuple[str, ...] = (PIPELINE,),
) -> WorkerPresence:
    return WorkerPresence(
        worker_id=worker_id,
        release_version=release,
        pipelines=[HostedPipeline(pipeline_id=p, contract_version=CONTRACT) for p in pipelines],
        artifact_digest="sha256:" + "a" * 64,
        state=state,
        sent_at_epoch_ms=T0,
    )


def lambda_registration(worker_id: str = "fn-1", function: str = "tpf-worker") -> Any:
    return WorkerRegistration(
        worker_id=worker_id,
        contract_version=CONTRACT,
        release_version="1.0.0",
        kind="lambda",
        function_name=function,
    )


@pytest.fixture
def table() -> InMemoryWorkerTable:
    return InMemoryWorkerTable()


@pytest.fixture
def mappings() -> InMemoryEventSourceMappings:
    return InMemoryEventSourceMappings()


@pytest.fixture
def directory(table: InMemoryWorkerTable, mappings: InMemoryEventSourceMappings) -> WorkerDirectory:
    return WorkerDirectory(table, stale_after=STALE_AFTER, mappings=mappings, cache_ttl_s=1.0)


async def state_of(directory: WorkerDirectory, worker_id: str, now_ms: int) -> str:
    workers = {w.worker_id: w for w in await directory.list(PIPELINE, now_ms)}
    return workers[worker_id].state


async def test_a_reporting_worker_is_healthy_until_it_misses_the_stale_window(
    directory: WorkerDirectory,
) -> None:
    await directory.report(presence(), T0)
    stale_ms = STALE_AFTER // timedelta(milliseconds=1)
    assert await state_of(directory, "w1", T0) == "HEALTHY"
    assert await state_of(directory, "w1", T0 + stale_ms) == "HEALTHY"
    assert await state_of(directory, "w1", T0 + stale_ms + 1) == "STALE"

    await directory.report(presence(), T0 + stale_ms + 1)  # it came back
    assert await state_of(directory, "w1", T0 + stale_ms + 2) == "HEALTHY"


async def test_a_presence_writes_one_item_per_hosted_pipeline(
    directory: WorkerDirectory, table: InMemoryWorkerTable
) -> None:
    await directory.report(presence(pipelines=(PIPELINE, "org.tests.other")), T0)
    item = await table.get(*worker_item_key("org.tests.other", "w1"))
    assert item is not None
    assert (item["rv"], item["cv"], item["hb"]) == ("1.0.0", CONTRACT, T0)
    assert item["ttl"] == T0 // 1000 + 86_400
    [record] = await directory.list("org.tests.other", T0)
    assert (record.worker_id, record.pipeline_id, record.protocol) == (
        "w1",
        "org.tests.other",
        "sqs",
    )


async def test_a_drain_request_makes_a_worker_draining_and_a_later_presence_keeps_it(
    directory: WorkerDirectory, table: InMemoryWorkerTable
) -> None:
    await directory.report(presence(), T0)
    drained = await directory.drain(PIPELINE, "w1", T0 + 10)
    assert (drained.state, drained.drain_requested_at_epoch_ms) == ("DRAINING", T0 + 10)

    await directory.report(presence(), T0 + 20)  # still says RUNNING: it has not noticed yet
    [record] = await directory.list(PIPELINE, T0 + 20)
    assert (record.state, record.drain_requested_at_epoch_ms) == ("DRAINING", T0 + 10)
    assert (record.registered_at_epoch_ms, record.last_heartbeat_at_epoch_ms) == (T0, T0 + 20)

    again = await directory.drain(PIPELINE, "w1", T0 + 30)
    assert again.drain_requested_at_epoch_ms == T0 + 10  # the first request's time stays
    item = await table.get(*worker_item_key(PIPELINE, "w1"))
    assert item is not None and item[DRAIN_ATTRIBUTE] == T0 + 10


@pytest.mark.parametrize("reported", ["DRAINING", "STOPPED"])
async def test_a_worker_that_reports_draining_or_stopped_is_draining(
    directory: WorkerDirectory, reported: WorkerState
) -> None:
    await directory.report(presence(state=reported), T0)
    [record] = await directory.list(PIPELINE, T0)
    assert (record.reported_state, record.state) == (reported, "DRAINING")


async def test_unknown_workers_cannot_be_drained_or_heartbeat(directory: WorkerDirectory) -> None:
    with pytest.raises(NotFound):
        await directory.drain(PIPELINE, "nobody", T0)
    with pytest.raises(NotFound):
        await directory.heartbeat(PIPELINE, "nobody", T0)
    assert await directory.list(PIPELINE, T0) == []


async def test_a_registered_worker_stays_healthy_by_heartbeats(directory: WorkerDirectory) -> None:
    registration = WorkerRegistration.model_validate(
        {
            "workerId": "rest-1",
            "contractVersion": CONTRACT,
            "releaseVersion": "1.0.0",
            "protocol": "REST",
            "endpoint": "http://10.0.0.7:8080/tpf",
            "artifactId": "orders-worker",
            "artifactDigest": "sha256:" + "b" * 64,
        }
    )
    registered = await directory.register(PIPELINE, registration, T0)
    assert (registered.state, registered.protocol, registered.kind) == (
        "HEALTHY",
        "rest",
        "process",
    )
    assert registered.registered_at_epoch_ms == T0

    later = T0 + 10_000
    beat = await directory.heartbeat(PIPELINE, "rest-1", later)
    assert (beat.last_heartbeat_at_epoch_ms, beat.registered_at_epoch_ms) == (later, T0)
    assert await state_of(directory, "rest-1", later + 15_000) == "HEALTHY"
    assert await state_of(directory, "rest-1", later + 15_001) == "STALE"


async def test_healthy_workers_are_those_of_the_release_and_answers_are_cached(
    directory: WorkerDirectory, table: InMemoryWorkerTable
) -> None:
    await directory.report(presence("old", release="1.0.0"), T0)
    await directory.report(presence("new", release="2.0.0"), T0)
    await directory.report(presence("leaving", release="2.0.0", state="DRAINING"), T0)
    assert [w.worker_id for w in await directory.healthy(PIPELINE, "2.0.0", T0)] == ["new"]
    assert [w.worker_id for w in await directory.healthy(PIPELINE, "1.0.0", T0)] == ["old"]

    del table.items[worker_item_key(PIPELINE, "new")]  # behind the directory's back
    assert [w.worker_id for w in await directory.healthy(PIPELINE, "2.0.0", T0 + 999)] == ["new"]
    assert await directory.healthy(PIPELINE, "2.0.0", T0 + 1000) == []

    await directory.report(presence("new", release="2.0.0"), T0 + 1000)
    # the write forgot the cached empty answer
    assert [w.worker_id for w in await directory.healthy(PIPELINE, "2.0.0", T0 + 1001)] == ["new"]
    table.items.clear()
    directory.invalidate()
    assert await directory.healthy(PIPELINE, "2.0.0", T0 + 1002) == []


class CountingTable(InMemoryWorkerTable):
    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    async def query(self, pk: str) -> list[dict[str, Any]]:
        self.queries += 1
        await asyncio.sleep(0)  # let the other callers arrive while this one reads
        return await super().query(pk)


async def test_a_burst_of_admission_checks_reads_the_table_once() -> None:
    table = CountingTable()
    directory = WorkerDirectory(table, stale_after=STALE_AFTER)
    await directory.report(presence(), T0)
    answers = await asyncio.gather(*(directory.healthy(PIPELINE, "1.0.0", T0) for _ in range(20)))
    assert all([w.worker_id for w in a] == ["w1"] for a in answers)
    assert table.queries == 1


async def test_a_lambda_worker_is_healthy_while_its_event_source_mapping_is_enabled(
    directory: WorkerDirectory, mappings: InMemoryEventSourceMappings
) -> None:
    mappings.set("tpf-worker", True)
    registered = await directory.register(PIPELINE, lambda_registration(), T0)
    assert (registered.kind, registered.protocol, registered.state) == (
        "lambda",
        "lambda",
        "HEALTHY",
    )
    assert registered.last_heartbeat_at_epoch_ms is None
    # it never heartbeats, and no window makes it stale
    assert await state_of(directory, "fn-1", T0 + 86_400_000) == "HEALTHY"

    mappings.set("tpf-worker", False)
    directory.invalidate()
    assert await state_of(directory, "fn-1", T0) == "STALE"
    assert await directory.healthy(PIPELINE, "1.0.0", T0) == []


async def test_event_source_mapping_answers_are_cached_for_ten_seconds(
    directory: WorkerDirectory, mappings: InMemoryEventSourceMappings
) -> None:
    mappings.set("tpf-worker", True)
    await directory.register(PIPELINE, lambda_registration(), T0)
    lookups = mappings.lookups
    mappings.set("tpf-worker", False)
    assert await state_of(directory, "fn-1", T0 + 9_999) == "HEALTHY"
    assert mappings.lookups == lookups
    assert await state_of(directory, "fn-1", T0 + 10_000) == "STALE"
    assert mappings.lookups == lookups + 1


async def test_a_failed_mapping_lookup_keeps_the_last_answer(
    directory: WorkerDirectory, mappings: InMemoryEventSourceMappings
) -> None:
    mappings.set("tpf-worker", True)
    await directory.register(PIPELINE, lambda_registration(), T0)

    async def unavailable(function_name: str) -> bool:
        raise RuntimeError("throttled")

    mappings.enabled = unavailable  # type: ignore[method-assign]
    assert await state_of(directory, "fn-1", T0 + 10_000) == "HEALTHY"


async def test_lambda_workers_do_not_heartbeat_but_can_be_drained(
    directory: WorkerDirectory, table: InMemoryWorkerTable, mappings: InMemoryEventSourceMappings
) -> None:
    mappings.set("tpf-worker", True)
    await directory.register(PIPELINE, lambda_registration(), T0)
    item = await table.get(*worker_item_key(PIPELINE, "fn-1"))
    assert item is not None and "ttl" not in item  # it would expire a day after deploy
    with pytest.raises(Conflict):
        await directory.heartbeat(PIPELINE, "fn-1", T0)
    assert (await directory.drain(PIPELINE, "fn-1", T0)).state == "DRAINING"


async def test_without_a_mapping_port_registered_lambda_workers_are_trusted(
    table: InMemoryWorkerTable,
) -> None:
    directory = WorkerDirectory(table, stale_after=STALE_AFTER)
    assert (await directory.register(PIPELINE, lambda_registration(), T0)).state == "HEALTHY"


def test_a_lambda_registration_needs_a_function_name() -> None:
    with pytest.raises(ValueError, match="functionName"):
        WorkerRegistration(
            worker_id="fn", contract_version=CONTRACT, release_version="1", kind="lambda"
        )


# -- over HTTP --------------------------------------------------------------------------------

CONTROL, ADMIN = "control-token", "admin-token"
ROUTE = f"/tpf/admin/tenants/acme/pipelines/{PIPELINE}/workers"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def http(directory: WorkerDirectory) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        InMemoryCoordinator.create().service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        routers=[workers_router(directory)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client


def tpf_registration(**overrides: Any) -> dict[str, Any]:
    body = {
        "workerId": "rest-1",
        "contractVersion": CONTRACT,
        "releaseVersion": "1.0.0",
        "protocol": "rest",
        "endpoint": "http://10.0.0.7:8080/tpf",
        "artifactId": "orders-worker",
        "artifactDigest": "sha256:" + "b" * 64,
    }
    return {**body, **overrides}


async def test_worker_routes_need_the_admin_token(http: httpx.AsyncClient) -> None:
    as_client = {"Authorization": f"Bearer {CONTROL}"}
    assert (await http.get(ROUTE)).status_code == 401
    assert (await http.get(ROUTE, headers=as_client)).status_code == 401
    register = await http.post(f"{ROUTE}/register", json=tpf_registration(), headers=as_client)
    assert register.status_code == 401
    assert (await http.post(f"{ROUTE}/rest-1/drain", headers=as_client)).status_code == 401


async def test_a_worker_registers_heartbeats_and_drains_over_http(
    http: httpx.AsyncClient,
) -> None:
    registered = await http.post(f"{ROUTE}/register", json=tpf_registration(), headers=AS_ADMIN)
    assert registered.status_code == 200, registered.text
    body = registered.json()
    assert body["workerId"] == "rest-1" and body["pipelineId"] == PIPELINE
    assert (body["protocol"], body["releaseVersion"], body["state"]) == ("rest", "1.0.0", "HEALTHY")
    assert body["endpoint"] == "http://10.0.0.7:8080/tpf"
    assert body["drainRequestedAtEpochMs"] is None

    beat = await http.post(f"{ROUTE}/rest-1/heartbeat", headers=AS_ADMIN)
    assert beat.status_code == 200, beat.text
    assert beat.json()["lastHeartbeatAtEpochMs"] >= body["lastHeartbeatAtEpochMs"]

    drained = await http.post(f"{ROUTE}/rest-1/drain", headers=AS_ADMIN)
    assert drained.status_code == 200, drained.text
    assert drained.json()["state"] == "DRAINING"
    assert drained.json()["drainRequestedAtEpochMs"] is not None

    listed = await http.get(ROUTE, headers=AS_ADMIN)
    assert listed.status_code == 200
    assert [(w["workerId"], w["state"]) for w in listed.json()] == [("rest-1", "DRAINING")]


async def test_a_lambda_worker_registers_at_deploy_time_over_http(
    http: httpx.AsyncClient, mappings: InMemoryEventSourceMappings
) -> None:
    mappings.set("tpf-orders-worker", True)
    body = tpf_registration(
        workerId="lambda-1",
        protocol=None,
        endpoint=None,
        kind="lambda",
        functionName="tpf-orders-worker",
    )
    registered = await http.post(f"{ROUTE}/register", json=body, headers=AS_ADMIN)
    assert registered.status_code == 200, registered.text
    assert registered.json()["kind"] == "lambda"
    assert registered.json()["functionName"] == "tpf-orders-worker"
    assert registered.json()["state"] == "HEALTHY"
    heartbeat = await http.post(f"{ROUTE}/lambda-1/heartbeat", headers=AS_ADMIN)
    assert (heartbeat.status_code, heartbeat.json()["errorCode"]) == (409, "LAMBDA_WORKER")


async def test_tpfs_self_host_registration_is_accepted_as_its_script_sends_it(
    http: httpx.AsyncClient,
) -> None:
    """``register-and-activate-release.sh`` (upstream, a7f169b): a one-process worker, and ``""``
    for artifacts the release does not have."""
    body = tpf_registration(
        workerId="restaurant-local-worker",
        protocol="local",
        endpoint="in-process",
        artifactId="",
        artifactDigest="",
    )
    registered = await http.post(f"{ROUTE}/register", json=body, headers=AS_ADMIN)
    assert registered.status_code == 200, registered.text
    shown = registered.json()
    assert (shown["workerId"], shown["protocol"], shown["state"]) == (
        "restaurant-local-worker",
        "local",
        "HEALTHY",
    )
    assert shown["releaseVersion"] == body["releaseVersion"]
    listed = await http.get(
        ROUTE, params={"releaseVersion": body["releaseVersion"]}, headers=AS_ADMIN
    )
    assert "restaurant-local-worker" in [w["workerId"] for w in listed.json()]
    other = await http.get(ROUTE, params={"releaseVersion": "9.9.9"}, headers=AS_ADMIN)
    assert other.json() == []
    by_contract = await http.get(
        ROUTE, params={"contractVersion": "sha256:" + "0" * 64}, headers=AS_ADMIN
    )
    assert by_contract.json() == []


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (tpf_registration(workerId=None), "/workerId"),
        (tpf_registration(releaseVersion=""), "/releaseVersion"),
        (tpf_registration(endpoint=None), "/endpoint"),
        (tpf_registration(protocol="carrier-pigeon"), "/protocol"),
        (tpf_registration(artifactDigest="md5:00"), "/artifactDigest"),
        (tpf_registration(protocol=None, endpoint=None, kind="lambda"), "/functionName"),
        ([], ""),
    ],
)
async def test_a_bad_registration_is_refused_with_the_pointer_of_the_field(
    http: httpx.AsyncClient, body: Any, pointer: str
) -> None:
    response = await http.post(f"{ROUTE}/register", json=body, headers=AS_ADMIN)
    assert response.status_code == 400, response.text
    assert (response.json()["errorCode"], response.json()["pointer"]) == ("INVALID_INPUT", pointer)


async def test_a_body_that_is_not_json_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(f"{ROUTE}/register", content=b"{", headers=AS_ADMIN)
    assert (response.status_code, response.json()["errorCode"]) == (400, "INVALID_JSON")


async def test_an_unknown_worker_is_not_found(http: httpx.AsyncClient) -> None:
    for action in ("heartbeat", "drain"):
        response = await http.post(f"{ROUTE}/nobody/{action}", headers=AS_ADMIN)
        assert (response.status_code, response.json()["errorCode"]) == (404, "NOT_FOUND")
    assert (await http.get(ROUTE, headers=AS_ADMIN)).json() == []
