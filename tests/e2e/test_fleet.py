"""A coordinator and workers as separate processes, driven over HTTP, on each substrate."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infra.resources import work_queue
from tests.waiting import wait_until
from tpf.codec import encode_envelope
from tpf.substrate import sync_client
from tpfctl.stack import OwnedStack

ORDER = {"orderId": "o-1", "amountCents": 1200, "customer": "Ada"}


def submit(api: httpx.Client, pipeline: str, value: Any, key: str | None = None) -> httpx.Response:
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


RESTAURANT = "org.pipelineframework.restaurantapproval"


def restaurant_order() -> dict[str, Any]:
    return {
        "requestId": str(uuid.uuid4()),
        "customerName": "Ada",
        "restaurantName": "Chez Lovelace",
        "items": "soup",
        "totalAmount": 23.5,
        "currency": "EUR",
    }


def pending_of(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The execution's pending interaction, once it is in the inbox."""

    def found() -> dict[str, Any] | None:
        listed = api.get("/interactions/pending", params={"limit": 1000}).json()
        return next((i for i in listed if i["executionId"] == execution_id), None)

    return wait_until(found, timeout=30, interval=0.1)  # type: ignore[return-value]


def admin_client(fleet: OwnedStack) -> httpx.Client:
    return httpx.Client(
        base_url=f"{fleet.api_url}/tpf/admin/tenants/acme",
        headers={"Authorization": f"Bearer {fleet.admin_token}"},
        timeout=10,
    )


def finished(api: httpx.Client, execution_id: str, timeout: float = 30) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/executions/{execution_id}").json()
        return body if body["status"] in ("SUCCEEDED", "FAILED", "DLQ") else None

    return wait_until(terminal, timeout=timeout, interval=0.1)  # type: ignore[return-value]


def test_an_execution_runs_to_its_result_through_separate_processes(api: httpx.Client) -> None:
    response = submit(api, "org.example.orders", {**ORDER, "flaky": True})
    assert response.status_code == 200, response.text
    execution_id = response.json()["executionId"]
    status = finished(api, execution_id)
    assert status["status"] == "SUCCEEDED" and status["attempt"] == 2  # one retry
    result = api.get(f"/executions/{execution_id}/result").json()
    assert result["status"] == status  # the status object, as GET of the execution gives it
    assert json.loads(result["resultPayload"]["payload"])["orderId"] == "o-1"


def test_a_duplicate_submission_returns_the_first_execution(api: httpx.Client) -> None:
    first = submit(api, "org.example.orders", ORDER, key="same-key").json()
    again = submit(api, "org.example.orders", ORDER, key="same-key").json()
    assert again == {**first, "duplicate": True}
    other = submit(api, "org.example.orders", {**ORDER, "amountCents": 1}, key="same-key")
    assert other.status_code == 409
    assert other.json()["errorCode"] == "IDEMPOTENCY_KEY_REUSED"


def test_bad_requests_get_clear_errors(api: httpx.Client, fleet: OwnedStack) -> None:
    wrong_type = submit(api, "org.example.orders", {**ORDER, "amountCents": "lots"})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["pointer"] == "/inputPayload/payload/amountCents"
    missing = api.post("/executions", json={"inputPayload": encode_envelope("x", ORDER)})
    assert (missing.status_code, missing.json()["pointer"]) == (400, "/pipelineId")
    not_json = api.post("/executions", content=b"{nope")
    assert not_json.status_code == 400
    assert submit(api, "org.example.unknown", ORDER).status_code == 404
    assert api.get(f"/executions/{uuid.uuid4()}").status_code == 404
    anonymous = httpx.get(f"{fleet.api_url}/tpf/control-plane/tenants/acme/executions/x")
    assert anonymous.status_code == 401
    wrong = httpx.get(
        f"{fleet.api_url}/tpf/control-plane/tenants/acme/executions/x",
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong.status_code == 401
    assert httpx.get(f"{fleet.api_url}/q/health/ready").status_code == 200
    assert b"tpf_submissions" in httpx.get(f"{fleet.api_url}/q/metrics").content


def test_an_unexpected_exception_fails_the_transition_with_its_message(api: httpx.Client) -> None:
    execution_id = submit(api, "org.tests.broken", {"name": "x"}).json()["executionId"]
    status = finished(api, execution_id)
    assert status["status"] == "DLQ"  # retryable, and the budget of 2 attempts ran out
    assert status["errorCode"] == "UNEXPECTED"
    assert "ZeroDivisionError: cannot divide x" in status["errorMessage"]


def test_a_malformed_message_reaches_the_dead_letter_queue_and_workers_live_on(
    fleet: OwnedStack, api: httpx.Client
) -> None:
    sqs = sync_client(fleet.settings, "sqs", endpoints=fleet.endpoints)
    queue = fleet.settings.resource(work_queue("org.example.orders", fleet.spec.release))
    work = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"]
    sent = sqs.send_message(QueueUrl=work, MessageBody="this is not an envelope")["MessageId"]

    def dead_lettered() -> bool:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return any(m["MessageId"] == sent for m in messages.get("Messages", []))

    wait_until(dead_lettered, timeout=60, interval=0.2)
    assert all(member.alive for member in fleet.fleet.members)
    execution_id = submit(api, "org.example.orders", ORDER).json()["executionId"]
    assert finished(api, execution_id)["status"] == "SUCCEEDED"


POISON = [
    "[" * 5_000,
    "9" * 5_000,
    '{"kind": "await-completion", "protocol": 1, "tenantId": "acme", "responsePayload": '
    '{"payloadTypeId": "x", "payload": "' + "[" * 5_000 + '"}}',
    '{"kind": "result", "protocol": 1}',
    '{"Records": [{"s3": "\\u00e9\\ud800"}]}',
    "\\u00ff not even JSON",
]


def test_poison_on_every_queue_restarts_nothing_and_an_execution_still_succeeds(
    fleet: OwnedStack, api: httpx.Client
) -> None:
    sqs = sync_client(fleet.settings, "sqs", endpoints=fleet.endpoints)
    consumed = [
        work_queue("org.example.orders", fleet.spec.release),
        "results",
        "await-completions",
        "ingest",
    ]
    for name in consumed:
        url = sqs.get_queue_url(QueueName=fleet.settings.resource(name))["QueueUrl"]
        for body in POISON:
            sqs.send_message(QueueUrl=url, MessageBody=body)
    execution_id = submit(api, "org.example.orders", ORDER).json()["executionId"]
    assert finished(api, execution_id, timeout=60)["status"] == "SUCCEEDED"

    def settled() -> bool:  # deleted, or dead-lettered after maxReceiveCount deliveries
        for name in consumed:
            url = sqs.get_queue_url(QueueName=fleet.settings.resource(name))["QueueUrl"]
            found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            if int(found["ApproximateNumberOfMessages"]) + int(
                found["ApproximateNumberOfMessagesNotVisible"]
            ):
                return False
        return True

    wait_until(settled, timeout=120, interval=0.5)
    assert httpx.get(f"{fleet.api_url}/q/health/ready").status_code == 200
    assert all(member.alive for member in fleet.fleet.members)
    assert fleet.fleet.crashes == [], "no process restarted"
    assert loop_restarts(fleet) == 0


def loop_restarts(fleet: OwnedStack) -> float:
    page = httpx.get(f"{fleet.api_url}/q/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "tpf_loop_restarts_total"
    )


def test_killing_a_worker_mid_transition_loses_nothing(
    fleet: OwnedStack, api: httpx.Client, markers: Path
) -> None:
    execution_id = submit(api, "org.tests.slow", {"name": "slow", "seconds": 2.0}).json()[
        "executionId"
    ]

    def started() -> list[Path]:
        return list(markers.glob(f"work.{execution_id}.*"))

    wait_until(started, timeout=20)
    victim_pid = None
    for member in fleet.fleet.members:
        if member.role == "worker" and member.alive:
            # We don't know which worker took it: kill them all, then bring up a fresh one.
            fleet.fleet.kill(member)
            victim_pid = member.process.pid  # type: ignore[union-attr]
    assert victim_pid is not None
    for member in fleet.fleet.members:
        if member.role == "worker":
            fleet.fleet.start(member)
    status = finished(api, execution_id, timeout=60)
    assert status["status"] == "SUCCEEDED"
    assert len(started()) >= 2  # the step ran again after the kill: nothing was lost
    result = json.loads(
        api.get(f"/executions/{execution_id}/result").json()["resultPayload"]["payload"]
    )
    assert result["by"] != str(victim_pid)


def test_operators_redrive_and_cancel_with_the_cli_and_see_the_history(
    fleet: OwnedStack, api: httpx.Client, tmp_path: Path
) -> None:
    from tests.e2e.test_cli import clean_env, tpf
    from tpfctl.cli.operations import default_actor

    env = clean_env(tmp_path, **fleet.env, TPF_API_URL=fleet.api_url)
    execution_id = submit(api, "org.tests.broken", {"name": "again"}).json()["executionId"]
    first = finished(api, execution_id)
    assert first["status"] == "DLQ"

    stale = tpf("redrive", execution_id, "--tenant", "acme", "--expected-version", "0", env=env)
    assert stale.returncode == 2 and "409" in stale.stderr
    redriven = tpf(
        "redrive", execution_id, "--tenant", "acme", "--reason", "bug fixed", "--json", env=env
    )
    assert redriven.returncode == 0, redriven.stderr
    assert json.loads(redriven.stdout)["previousStatus"] == "DLQ"

    def dead_again() -> dict[str, Any] | None:
        status = finished(api, execution_id)
        return status if status["version"] > first["version"] + 1 else None

    second = wait_until(dead_again, timeout=30)
    assert second["status"] == "DLQ" and second["attempt"] == 4  # a fresh budget of 2

    shown = tpf("status", execution_id, "--tenant", "acme", "--history", "--json", env=env)
    history = json.loads(shown.stdout)["history"]
    operator = [h for h in history if h["reason"] == "bug fixed"]
    assert len(operator) == 1 and operator[0]["previousStatus"] == "DLQ"
    assert operator[0]["actor"] == default_actor()  # user@host of whoever ran the command
    assert [h["status"] for h in history].count("DLQ") == 2

    # Long enough that it is still running however slowly the CLI starts; its late result is
    # fenced off after the cancel.
    slow = submit(api, "org.tests.slow", {"name": "cancel me", "seconds": 15}).json()
    cancelled = tpf(
        "cancel", slow["executionId"], "--tenant", "acme", "--reason", "not needed", env=env
    )
    assert cancelled.returncode == 0, cancelled.stderr
    status = finished(api, slow["executionId"])
    assert (status["status"], status["errorCode"]) == ("FAILED", "CANCELLED")

    dry = tpf(
        "redrive", "--where", "status=DLQ", "--where", "pipeline=org.tests.broken",
        "--tenant", "acme", "--dry-run", "--json", env=env,
    )  # fmt: skip
    report = json.loads(dry.stdout)
    assert report["dryRun"] and execution_id in report["executionIds"]
    assert finished(api, execution_id)["version"] == second["version"]  # nothing moved


def test_a_decision_for_another_order_fails_and_a_redrive_fails_it_again(
    api: httpx.Client, fleet: OwnedStack
) -> None:
    """TPF's incident flow: the inbox takes the answer, finalize refuses it, non-retryably; a
    re-drive runs finalize again on the same answer and fails again, at a higher version."""
    execution_id = submit(api, RESTAURANT, restaurant_order()).json()["executionId"]

    interaction = pending_of(api, execution_id)
    wrong = {"accepted": {"orderId": str(uuid.uuid4()), "decidedAt": "2026-12-01T12:00:00Z"}}
    answered = api.post(
        "/interactions/complete",
        json={
            "interactionId": interaction["interactionId"],
            "responsePayload": encode_envelope("x", wrong),
        },
    )
    assert answered.status_code == 200, answered.text
    failed = finished(api, execution_id)
    assert (failed["status"], failed["errorCode"]) == ("FAILED", "DECISION_ORDER_MISMATCH")

    with admin_client(fleet) as admin:
        redriven = admin.post(
            f"/executions/{execution_id}/redrive",
            json={"allowFailed": True, "reason": "incident drill"},
        )
    assert redriven.status_code == 200, redriven.text

    def failed_again() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/executions/{execution_id}").json()
        return body if body["status"] == "FAILED" and body["version"] > failed["version"] else None

    again = wait_until(failed_again, timeout=30, interval=0.1)
    assert again["errorCode"] == "DECISION_ORDER_MISMATCH"


def test_an_unanswered_await_times_out_and_a_redrive_waits_again_in_a_fresh_unit(
    api: httpx.Client, fleet: OwnedStack
) -> None:
    execution_id = submit(api, "org.tests.short-wait", {"question": "still there?"}).json()[
        "executionId"
    ]
    timed_out = finished(api, execution_id)
    assert (timed_out["status"], timed_out["errorCode"]) == ("FAILED", "AWAIT_TIMEOUT")

    with admin_client(fleet) as admin:
        redrive = admin.post(f"/executions/{execution_id}/redrive", json={"allowFailed": True})
    assert redrive.status_code == 200, redrive.text

    fresh = pending_of(api, execution_id)
    answered = api.post(
        "/interactions/complete",
        json={
            "interactionId": fresh["interactionId"],
            "responsePayload": encode_envelope("x", {"answer": "yes"}),
        },
    )
    # The fresh unit has a deadline of its own; an answer in time resumes the execution.
    if answered.status_code == 200:
        assert finished(api, execution_id)["status"] == "SUCCEEDED"
    else:
        assert answered.json()["errorCode"] == "AWAIT_DEADLINE_PASSED"


def _java_map(value: dict[str, Any]) -> dict[str, Any]:
    """The nested java.util.Map envelope form TPF clients send."""

    def wrap(v: Any) -> dict[str, Any]:
        if isinstance(v, dict):
            return _java_map(v)
        return {"payloadTypeId": "java.lang.String", "payload": json.dumps(v)}

    return {
        "payloadTypeId": "java.util.Map",
        "payloadEncoding": "application/tpf-transition+json",
        "payload": json.dumps({"items": {k: wrap(v) for k, v in value.items()}}),
    }


def test_a_restaurant_order_waits_for_its_decision_in_the_inbox(api: httpx.Client) -> None:
    execution_id = submit(api, RESTAURANT, restaurant_order()).json()["executionId"]

    interaction = pending_of(api, execution_id)
    assert api.get(f"/executions/{execution_id}").json()["status"] == "WAITING_EXTERNAL"
    order_id = interaction["requestPayload"]["orderId"]
    decision = {"accepted": {"orderId": order_id, "decidedAt": "2026-11-21T12:00:00Z"}}
    body = {
        "interactionId": interaction["interactionId"],
        "idempotencyKey": "decision-1",
        "responsePayload": _java_map(decision),
        "actor": "chef",
    }
    first = api.post("/interactions/complete", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    assert api.post("/interactions/complete", json=body).json()["duplicate"] is True
    conflicting = {
        **body,
        "responsePayload": encode_envelope("x", {"declined": {"orderId": order_id}}),
    }
    assert api.post("/interactions/complete", json=conflicting).status_code == 409
    bad = {**body, "responsePayload": encode_envelope("x", {"accepted": {"orderId": 5}})}
    refused = api.post("/interactions/complete", json=bad)
    assert refused.status_code in (400, 409)  # the first answer stands either way

    assert finished(api, execution_id)["status"] == "SUCCEEDED"
    result = api.get(f"/executions/{execution_id}/result").json()["resultPayload"]
    outcome = json.loads(result["payload"])
    assert (outcome["outcome"], outcome["orderId"]) == ("APPROVED", order_id)
