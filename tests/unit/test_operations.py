"""Re-drive, bulk re-drive, cancel and history over the in-memory coordinator and its admin API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from coordinator.admin import admin_router
from coordinator.api import create_app
from coordinator.operations import Selection
from coordinator.testing import InMemoryCoordinator
from tests.unit.drive import checkpointed, commands, completed, failed, submit
from tpf.errors import Conflict
from tpf.records import Status

ADMIN, CONTROL = "admin-token", "control-token"


async def dead(c: InMemoryCoordinator, *, retryable: bool = True) -> str:
    """An execution of ``checkpointed`` that ended DLQ (or FAILED when not retryable)."""
    execution_id = await submit(c, checkpointed.id, {"n": 1})
    for _ in range(2 if retryable else 1):  # max_attempts=2
        [command] = await commands(c)
        await c.committer.commit(failed(command, retryable=retryable), now_ms=2_000)
    return execution_id


async def history(c: InMemoryCoordinator, execution_id: str) -> list[dict[str, object]]:
    await c.close()  # lifecycle entries are written off the commit path
    return [change.as_json() for change in await c.service.history("acme", execution_id)]


async def test_redrive_resets_the_budget_dispatches_and_records_who_and_why(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await dead(coordinator)
    before = await coordinator.service.status("acme", execution_id)
    await coordinator.dead_letters.receive(wait_s=0)

    acted = await coordinator.operations.redrive(
        "acme",
        execution_id,
        actor="ada@ops",
        now_ms=5_000,
        expected_version=before.version,
        reason="downstream fixed",
    )
    assert acted.previous is Status.DLQ and acted.record.status is Status.QUEUED
    assert acted.record.retries_used == 0 and acted.record.version == before.version + 1
    [command] = await commands(coordinator)  # dispatched at once, with a fresh key
    assert command.transition_key == f"{execution_id}:0:3"
    await coordinator.committer.commit(completed(command, 1, {"n": 2}), now_ms=6_000)

    entries = await history(coordinator, execution_id)
    versions = [e["version"] for e in entries]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    redrive = next(e for e in entries if e["actor"] == "ada@ops")
    assert redrive == {
        **redrive,
        "previousStatus": "DLQ",
        "status": "QUEUED",
        "reason": "downstream fixed",
    }
    assert [e["status"] for e in entries][:3] == ["RUNNING", "WAIT_RETRY", "DLQ"]
    # A change a worker's result made names that worker; dispatches and operators name none.
    assert [e["workerId"] for e in entries] == [None, "w-test", "w-test", None, None, "w-test"]


async def test_redrive_refuses_a_stale_version_a_live_execution_and_failed_unless_allowed(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await dead(coordinator)
    record = await coordinator.service.status("acme", execution_id)
    with pytest.raises(Conflict) as stale:
        await coordinator.operations.redrive(
            "acme", execution_id, actor="a", now_ms=5_000, expected_version=record.version - 1
        )
    assert stale.value.code == "VERSION_CONFLICT"

    running = await submit(coordinator, checkpointed.id, {"n": 1})
    await commands(coordinator)  # a worker took it
    with pytest.raises(Conflict) as live:
        await coordinator.operations.redrive("acme", running, actor="a", now_ms=5_000)
    assert live.value.code == "NOT_REDRIVABLE"

    failed_id = await dead(coordinator, retryable=False)
    with pytest.raises(Conflict, match="allowFailed"):
        await coordinator.operations.redrive("acme", failed_id, actor="a", now_ms=5_000)
    acted = await coordinator.operations.redrive(
        "acme", failed_id, actor="a", now_ms=5_000, allow_failed=True
    )
    assert acted.previous is Status.FAILED


async def test_cancel_fails_a_live_execution_fences_its_worker_and_publishes_a_dead_letter(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    acted = await coordinator.operations.cancel(
        "acme", execution_id, actor="ada", now_ms=3_000, reason="customer asked"
    )
    assert acted.previous is Status.RUNNING
    assert (acted.record.status, acted.record.error_code) == (Status.FAILED, "CANCELLED")
    assert await coordinator.committer.commit(completed(command, 1, {"n": 2}), now_ms=4_000) is None
    [letter] = await coordinator.dead_letters.receive(wait_s=0)
    assert json.loads(letter.body)["reason"] == "cancelled"
    with pytest.raises(Conflict) as again:
        await coordinator.operations.cancel(
            "acme", execution_id, actor="ada", now_ms=5_000, reason=None
        )
    assert again.value.code == "ALREADY_TERMINAL"
    [*_, last] = await history(coordinator, execution_id)
    assert (last["actor"], last["reason"], last["previousStatus"]) == (
        "ada",
        "customer asked",
        "RUNNING",
    )


async def test_bulk_redrive_selects_by_status_and_error_code_and_dry_runs(
    coordinator: InMemoryCoordinator,
) -> None:
    dlq = [await dead(coordinator) for _ in range(3)]
    failed_id = await dead(coordinator, retryable=False)
    live = await submit(coordinator, checkpointed.id, {"n": 1})

    dry = await coordinator.operations.redrive_where(
        Selection(tenant_id="acme", error_code="BOOM"), actor="ops", dry_run=True
    )
    assert sorted(dry.matched) == sorted(dlq) and dry.redriven == []
    assert (await coordinator.service.status("acme", dlq[0])).status is Status.DLQ

    none = await coordinator.operations.redrive_where(
        Selection(tenant_id="acme", error_code="OTHER"), actor="ops"
    )
    assert none.matched == []

    both = Selection(tenant_id="acme", statuses=frozenset({Status.DLQ, Status.FAILED}))
    report = await coordinator.operations.redrive_where(both, actor="ops", per_second=1000)
    assert sorted(report.redriven) == sorted([*dlq, failed_id])
    for execution_id in report.redriven:
        assert (await coordinator.service.status("acme", execution_id)).status is Status.RUNNING
    assert (await coordinator.service.status("acme", live)).version == 0


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
async def http(coordinator: InMemoryCoordinator) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        coordinator.service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        routers=[admin_router(coordinator.operations)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client


async def test_admin_routes_need_the_admin_token_and_answer_in_tpf_form(
    coordinator: InMemoryCoordinator, http: httpx.AsyncClient
) -> None:
    execution_id = await dead(coordinator)
    route = f"/tpf/admin/tenants/acme/executions/{execution_id}/redrive"
    as_client = {"Authorization": f"Bearer {CONTROL}"}
    assert (await http.post(route, json={}, headers=as_client)).status_code == 401

    admin = {"Authorization": f"Bearer {ADMIN}"}
    bad = await http.post(route, json={"expectedVersion": -1}, headers=admin)
    assert (bad.status_code, bad.json()["pointer"]) == (400, "/expectedVersion")
    stale = await http.post(route, json={"expectedVersion": 0}, headers=admin)
    assert (stale.status_code, stale.json()["errorCode"]) == (409, "VERSION_CONFLICT")

    response = await http.post(route, json={"reason": "fixed", "actor": "ada"}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["previousStatus"], body["status"]) == ("DLQ", "QUEUED")
    assert set(body) >= {
        "tenantId",
        "executionId",
        "version",
        "currentStepIndex",
        "attempt",
        "pipelineId",
        "contractVersion",
        "releaseVersion",
        "updatedAtEpochMs",
    }
    unknown = await http.post("/tpf/admin/tenants/acme/executions/nope/cancel", headers=admin)
    assert unknown.status_code == 404

    await coordinator.close()
    history_route = f"/tpf/control-plane/tenants/acme/executions/{execution_id}/history"
    entries = (await http.get(history_route, headers=as_client)).json()
    # The re-drive, then its dispatch.
    assert [(e["actor"], e["status"]) for e in entries[-2:]] == [
        ("ada", "QUEUED"),
        ("coordinator", "RUNNING"),
    ]
    assert entries[-2]["reason"] == "fixed"


async def test_bulk_redrive_over_http_refuses_live_statuses(
    coordinator: InMemoryCoordinator, http: httpx.AsyncClient
) -> None:
    await dead(coordinator)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    route = "/tpf/admin/tenants/acme/executions/redrive"
    refused = await http.post(route, json={"status": ["RUNNING"]}, headers=admin)
    assert (refused.status_code, refused.json()["pointer"]) == (400, "/status")
    dry = (await http.post(route, json={"dryRun": True}, headers=admin)).json()
    assert (dry["dryRun"], dry["matched"], dry["redriven"]) == (True, 1, 0)
