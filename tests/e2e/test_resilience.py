"""Replicated coordinators and process deaths: SIGKILL, SIGTERM drains, takeovers, restarts.

One stack per substrate (two coordinators, two workers) serves every test of this module; a
test that stops or kills a member leaves the restart to ``full_fleet``, so the next test starts
with every process up again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fleets import running_fleet
from tests.waiting import wait_until
from tpf.codec import encode_envelope
from tpfctl.fleet import Member
from tpfctl.stack import OwnedStack

PIPELINES = ("examples.orders:orders", "tests.e2e.pipelines:slow", "tests.e2e.pipelines:tracked")
TERMINAL = ("SUCCEEDED", "FAILED", "DLQ")
EXIT_MARGIN_S = 4.0
"""What a member may take to exit beyond its drain's grace period: the end of a long poll, and
a busy 2-core machine's scheduling (still well short of the 30 s default grace a member that
ignored its test settings would wait)."""


# -- the stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["embedded", "localstack"])
def ha(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    """Two coordinator replicas and two workers as separate processes, on each substrate."""
    workdir = tmp_path_factory.mktemp("ha")
    yield from running_fleet(request, markers, workdir, pipelines=PIPELINES, coordinators=2)


@pytest.fixture(autouse=True)
def full_fleet(ha: OwnedStack) -> Iterator[None]:
    """Every member up before a test; whatever the test stopped or killed is restarted after."""
    assert [m.name for m in ha.fleet.members if not m.alive] == []
    yield
    for member in ha.fleet.members:
        if not member.alive:
            ha.fleet.start(member)
    for url in ha.api_urls:
        ha.fleet.wait_ready(f"{url}/q/health/ready")


# -- helpers -----------------------------------------------------------------------------------


def client(stack: OwnedStack, url: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{url}/tpf/control-plane/tenants/acme",
        headers={"Authorization": f"Bearer {stack.control_plane_token}"},
        timeout=10,
    )


def submit(api: httpx.Client, pipeline: str, value: Any, key: str | None = None) -> str:
    response = submit_response(api, pipeline, value, key)
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


def submit_response(
    api: httpx.Client, pipeline: str, value: Any, key: str | None = None
) -> httpx.Response:
    return api.post(
        "/executions",
        json={
            "pipelineId": pipeline,
            "inputShape": "UNI",
            "inputPayload": encode_envelope("x.Input", value),
            "idempotencyKey": key or uuid.uuid4().hex,
            "outputStreaming": False,
        },
    )


def status_of(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    response = api.get(f"/executions/{execution_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def all_finished(
    api: httpx.Client, execution_ids: list[str], timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """The terminal status of every execution, polled until all are terminal."""
    done: dict[str, dict[str, Any]] = {}

    def terminal() -> bool:
        for execution_id in execution_ids:
            if execution_id not in done:
                body = status_of(api, execution_id)
                if body["status"] in TERMINAL:
                    done[execution_id] = body
        return len(done) == len(execution_ids)

    try:
        wait_until(terminal, timeout=timeout, interval=0.1)
    except AssertionError:
        pending = {e: status_of(api, e)["status"] for e in execution_ids if e not in done}
        raise AssertionError(f"not terminal within {timeout}s: {pending}") from None
    return done


def result_of(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    body = api.get(f"/executions/{execution_id}/result").json()
    assert body["status"]["status"] == "SUCCEEDED", body
    value: dict[str, Any] = json.loads(body["resultPayload"]["payload"])
    return value


def committed(url: str) -> float:
    """Results this coordinator replica committed: ``tpf_transitions_total{role=coordinator}``."""
    text = httpx.get(f"{url}/q/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tpf_transitions_total" and sample.labels.get("role") == "coordinator"
    )


def coordinators(stack: OwnedStack) -> list[tuple[Member, str]]:
    members = [m for m in stack.fleet.members if m.role == "coordinator"]
    assert len(members) == len(stack.api_urls) == 2
    return list(zip(members, stack.api_urls, strict=True))


def workers(stack: OwnedStack) -> list[Member]:
    return [m for m in stack.fleet.members if m.role == "worker"]


def running_on(stack: OwnedStack, markers: Path, execution_id: str) -> tuple[Member, Member]:
    """The worker running ``tracked``'s step for this execution (from its marker), and the other."""

    def marker() -> list[Path]:
        return sorted(markers.glob(f"hold.{execution_id}.*"))

    found = wait_until(marker, timeout=20)
    assert isinstance(found, list)
    pid = int(found[0].name.split(".")[2])
    by_pid = {m.process.pid: m for m in workers(stack) if m.process is not None}
    assert pid in by_pid, f"marker from pid {pid}, workers are {sorted(by_pid)}"
    (other,) = (m for m in workers(stack) if m is not by_pid[pid])
    return by_pid[pid], other


def pid_of(member: Member) -> int:
    assert member.process is not None
    return member.process.pid


def stopped_within(
    stack: OwnedStack, member: Member, sig: signal.Signals, limit: float
) -> tuple[int, float]:
    """Send ``sig``; the exit code and how long the process took to exit (fails past ``limit``)."""
    assert member.process is not None and member.alive
    started = time.monotonic()
    stack.fleet.kill(member, sig)
    try:
        code = member.process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        stack.fleet.kill(member)  # full_fleet restarts it
        pytest.fail(f"{member.name} still running {limit:.1f}s after {sig.name}")
    return code, time.monotonic() - started


def hold_markers(markers: Path, execution_id: str) -> list[Path]:
    return list(markers.glob(f"hold.{execution_id}.*"))


# -- replicated coordinators -------------------------------------------------------------------


def test_killing_a_coordinator_mid_batch_loses_no_execution(ha: OwnedStack) -> None:
    (first, first_url), (victim, victim_url) = coordinators(ha)
    with client(ha, first_url) as survivor, client(ha, victim_url) as doomed:
        orders: dict[str, int] = {}

        def submit_orders(numbers: range) -> None:
            # Through both replicas alternately while both live; every third order fails once.
            for i in numbers:
                order = {"orderId": f"ha-{i}", "amountCents": 100 + i, "customer": "Ada"}
                api = doomed if i % 2 and victim.alive else survivor
                orders[submit(api, "org.example.orders", {**order, "flaky": i % 3 == 0})] = i

        submit_orders(range(10))
        # The victim takes part: it commits results of its own before it dies.
        wait_until(lambda: committed(victim_url) > 0, timeout=15)
        # Two slow ones (one per replica) make sure results are still to come after the kill.
        slow = [
            submit(api, "org.tests.slow", {"name": "ha", "seconds": 3.0})
            for api in (survivor, doomed)
        ]
        submit_orders(range(10, 15))
        before_kill = committed(first_url)
        assert victim.process is not None
        ha.fleet.kill(victim)
        in_flight = [e for e in slow if status_of(survivor, e)["status"] not in TERMINAL]
        assert in_flight, "the batch finished before the kill: nothing was in flight"
        submit_orders(range(15, 20))

        statuses = all_finished(survivor, [*slow, *orders], timeout=45)
        assert {e: s["status"] for e, s in statuses.items()} == dict.fromkeys(statuses, "SUCCEEDED")
        for execution_id, i in orders.items():
            # A kill between a commit and its dispatch costs an attempt, never the order.
            assert statuses[execution_id]["attempt"] >= (2 if i % 3 == 0 else 1), execution_id
            confirmation = result_of(survivor, execution_id)
            amount = 100 + i
            total = amount + amount * 20 // 100  # 20% tax
            assert (confirmation["orderId"], confirmation["totalCents"]) == (f"ha-{i}", total)
        # Only the survivor was left to commit the results that came after the kill.
        assert committed(first_url) > before_kill
        assert first.alive

        ha.fleet.start(victim)
        ha.fleet.wait_ready(f"{victim_url}/q/health/ready")
        # The restarted replica serves what the survivor finished.
        assert {status_of(doomed, e)["status"] for e in [*slow, *orders]} == {"SUCCEEDED"}


def test_an_idempotency_key_means_one_execution_across_replicas(
    ha: OwnedStack, markers: Path
) -> None:
    (_, a_url), (_, b_url) = coordinators(ha)
    job = {"name": "once", "seconds": 0.0}
    with client(ha, a_url) as a, client(ha, b_url) as b:
        key = uuid.uuid4().hex
        first = submit_response(a, "org.tests.slow", job, key)
        again = submit_response(b, "org.tests.slow", job, key)
        assert (first.status_code, again.status_code) == (200, 200), (first.text, again.text)
        assert first.json()["duplicate"] is False
        assert again.json() == {**first.json(), "duplicate": True}
        other = submit_response(b, "org.tests.slow", {**job, "name": "other"}, key)
        assert other.status_code == 409
        assert other.json()["errorCode"] == "IDEMPOTENCY_KEY_REUSED"

        # Both replicas at once, for several keys: still one execution per key.
        keys = [uuid.uuid4().hex for _ in range(6)]
        with ThreadPoolExecutor(max_workers=len(keys) * 2) as pool:
            racing = [
                (
                    k,
                    pool.submit(submit_response, a, "org.tests.slow", job, k),
                    pool.submit(submit_response, b, "org.tests.slow", job, k),
                )
                for k in keys
            ]
            answers = [(k, x.result(), y.result()) for k, x, y in racing]
        ids = [first.json()["executionId"]]
        for k, x, y in answers:
            assert (x.status_code, y.status_code) == (200, 200), (k, x.text, y.text)
            assert x.json()["executionId"] == y.json()["executionId"], k
            assert sorted([x.json()["duplicate"], y.json()["duplicate"]]) == [False, True], k
            ids.append(x.json()["executionId"])

        statuses = all_finished(a, ids)
        assert {s["status"] for s in statuses.values()} == {"SUCCEEDED"}
        # One dispatch per execution: a duplicate submission never sends a second command.
        runs = {e: len(list(markers.glob(f"work.{e}.*"))) for e in ids}
        assert runs == dict.fromkeys(ids, 1)


# -- graceful shutdown -------------------------------------------------------------------------


def test_a_terminated_worker_finishes_its_transition_within_the_grace_period(
    ha: OwnedStack, markers: Path
) -> None:
    grace = ha.settings.timings.shutdown_grace.total_seconds()
    with client(ha, ha.api_url) as api:
        execution_id = submit(api, "org.tests.tracked", {"name": "drain", "seconds": 2.0})
        victim, _ = running_on(ha, markers, execution_id)
        code, _ = stopped_within(ha, victim, signal.SIGTERM, grace + EXIT_MARGIN_S)
        assert code == 0, f"{victim.name} exited with {code}"
        assert all_finished(api, [execution_id])[execution_id]["status"] == "SUCCEEDED"
        # The draining worker finished the step itself: it ran once, on the stopped worker.
        assert result_of(api, execution_id)["by"] == str(pid_of(victim))
        assert len(hold_markers(markers, execution_id)) == 1


def test_a_terminated_worker_hands_back_what_outlives_the_grace_period(
    ha: OwnedStack, markers: Path
) -> None:
    grace = ha.settings.timings.shutdown_grace.total_seconds()
    with client(ha, ha.api_url) as api:
        execution_id = submit(
            api, "org.tests.tracked", {"name": "long", "seconds": grace + 3, "rerun_seconds": 1.5}
        )
        victim, other = running_on(ha, markers, execution_id)
        code, elapsed = stopped_within(ha, victim, signal.SIGTERM, grace + EXIT_MARGIN_S)
        assert code == 0, f"{victim.name} exited with {code}"
        assert elapsed >= grace - 1, f"gave up after {elapsed:.1f}s, before its grace period"
        status = all_finished(api, [execution_id], timeout=30)[execution_id]
        assert status["status"] == "SUCCEEDED"
        # Handed back, then run again to the end by the other worker. It was the same command
        # (same transition key, first attempt): without the hand-back, the transition's deadline
        # would pass before the command's visibility timeout, and its retry is a new attempt.
        assert result_of(api, execution_id)["by"] == str(pid_of(other))
        runs = hold_markers(markers, execution_id)
        assert len(runs) == 2
        assert {run.read_text() for run in runs} == {f"{execution_id}:0:1"}
        assert status["attempt"] == 1


def test_a_terminated_coordinator_exits_cleanly_and_its_replica_serves_on(
    ha: OwnedStack, markers: Path
) -> None:
    grace = ha.settings.timings.shutdown_grace.total_seconds()
    (_, survivor_url), (victim, victim_url) = coordinators(ha)
    with client(ha, survivor_url) as survivor, client(ha, victim_url) as doomed:
        # Work submitted through the replica that is about to stop, still running when it does.
        execution_id = submit(doomed, "org.tests.tracked", {"name": "handover", "seconds": 2.0})
        running_on(ha, markers, execution_id)
        code, _ = stopped_within(ha, victim, signal.SIGTERM, grace + EXIT_MARGIN_S)
        assert code == 0, f"{victim.name} exited with {code}"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{victim_url}/q/health/ready", timeout=2)

        assert httpx.get(f"{survivor_url}/q/health/ready", timeout=2).status_code == 200
        order = {"orderId": "after-stop", "amountCents": 500, "customer": "Ada"}
        after = submit(survivor, "org.example.orders", order)
        statuses = all_finished(survivor, [execution_id, after])
        assert {s["status"] for s in statuses.values()} == {"SUCCEEDED"}


# -- a worker killed mid-transition ------------------------------------------------------------


def test_a_worker_killed_mid_transition_is_taken_over_by_the_other(
    ha: OwnedStack, markers: Path
) -> None:
    with client(ha, ha.api_url) as api:
        execution_id = submit(
            api, "org.tests.tracked", {"name": "takeover", "seconds": 3.0, "rerun_seconds": 0.5}
        )
        victim, other = running_on(ha, markers, execution_id)
        assert victim.process is not None
        ha.fleet.kill(victim)
        # Deadline expiry (no more heartbeats) or the command's visibility timeout brings it
        # to the surviving worker; nothing restarts the victim before the execution ends.
        status = all_finished(api, [execution_id], timeout=40)[execution_id]
        assert status["status"] == "SUCCEEDED", status
        assert result_of(api, execution_id)["by"] == str(pid_of(other))
        assert len(hold_markers(markers, execution_id)) >= 2
