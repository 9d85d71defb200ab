"""The CLI's tables at 80 columns: statuses whole, ids short (whole with ``--wide``), no line
wider than the terminal; ``--json`` as complete as before."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table
from typer.testing import CliRunner

from tests.unit.cli_fakes import FakeApi, console, text, use, widest
from tpfctl.cli import approvals, common, dlq, executions, operations, release, workers

EXECUTION = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OTHER = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
PIPELINE = "org.pipelineframework.csvpayments"
BASE = f"/tpf/control-plane/tenants/default/executions/{EXECUTION}"


def rendered(table: Table, width: int = 80) -> str:
    shown = console(width)
    shown.print(table)
    return text(shown)


def status_body(execution_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {
        "executionId": execution_id,
        "tenantId": "default",
        "pipelineId": PIPELINE,
        "releaseVersion": "1.0.0",
        "status": status,
        "stepIndex": 2,
        "attempt": 1,
        "version": 7,
        "nextDueAtEpochMs": None,
        "createdAtEpochMs": 1_764_700_000_000,
        "updatedAtEpochMs": 1_764_700_060_000,
        "errorCode": None,
        "errorMessage": None,
        **more,
    }


RECORDS = [
    status_body(EXECUTION, "WAITING_EXTERNAL"),
    status_body(OTHER, "DLQ", errorCode="PROVIDER_UNAVAILABLE", version=12),
]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    fake = FakeApi()
    use(fake, monkeypatch, str(tmp_path))
    return fake


def test_an_execution_list_at_80_columns_keeps_statuses_whole_and_ids_short() -> None:
    shown = rendered(executions.listing("2 execution(s)", RECORDS, wide=False))

    assert "WAITING_EXTERNAL" in shown and "DLQ" in shown and "…" not in shown
    assert EXECUTION[:8] in shown and EXECUTION[:9] not in shown
    assert "PROVIDER_UNAVAILA" in shown  # folded, not cut
    assert "version" not in shown  # a --wide column
    assert widest(shown) <= 80


def test_an_execution_list_with_wide_shows_ids_whole_and_every_column() -> None:
    at_80 = rendered(executions.listing("2 execution(s)", RECORDS, wide=True))
    roomy = rendered(executions.listing("2 execution(s)", RECORDS, wide=True), width=200)

    assert "WAITING_EXTERNAL" in at_80 and widest(at_80) <= 80
    assert EXECUTION in roomy and OTHER in roomy
    assert "version" in roomy and "attempt" in roomy


def test_a_history_at_80_columns_keeps_both_statuses_whole() -> None:
    changes = [
        {
            "version": v,
            "atEpochMs": 1_764_700_000_000 + v,
            "previousStatus": before,
            "status": after,
            "stepIndex": 2,
            "attempt": 1,
            "errorCode": None,
            "actor": "ada@ops.example.com",
            "reason": "the provider answered again after an outage of forty minutes",
        }
        for v, before, after in [(6, "RUNNING", "WAITING_EXTERNAL"), (7, "WAITING_EXTERNAL", "DLQ")]
    ]

    narrow = rendered(executions.history_table(changes, wide=False))
    wide = rendered(executions.history_table(changes, wide=True))
    roomy = rendered(executions.history_table(changes, wide=True), width=200)

    assert "WAITING_EXTERNAL" in narrow and "ada@ops" not in narrow
    assert narrow.count("WAITING_EXTERNAL") == 1  # the previous status is the row above's
    assert wide.count("WAITING_EXTERNAL") == 2 and "ada@ops" in roomy
    assert widest(narrow) <= 80 and widest(wide) <= 80


def test_status_shows_how_far_an_itemized_await_is_answered(api: FakeApi) -> None:
    api.answer("GET", BASE, status_body(EXECUTION, "WAITING_EXTERNAL"))
    api.answer("GET", f"{BASE}/result", {"status": {}, "resultPayload": None})
    progress = {"stepId": "send-payment", "itemized": True, "answered": 412, "total": 70_867}
    api.answer("GET", f"{BASE}/await", progress)

    shown = CliRunner().invoke(executions.app, ["status", EXECUTION])
    as_json = CliRunner().invoke(executions.app, ["status", EXECUTION, "--json"])

    assert shown.exit_code == 0, shown.output
    assert "send-payment: 412 of 70,867 answered" in shown.stdout
    assert "WAITING_EXTERNAL" in shown.stdout and widest(shown.stdout) <= 80
    document = json.loads(as_json.stdout)
    assert document["await"] == progress
    assert {k: document[k] for k in RECORDS[0]} == RECORDS[0]


def test_status_of_an_execution_not_waiting_asks_for_no_await(api: FakeApi) -> None:
    api.answer("GET", BASE, status_body(EXECUTION, "RUNNING"))
    api.answer("GET", f"{BASE}/result", {"status": {}, "resultPayload": None})

    shown = CliRunner().invoke(executions.app, ["status", EXECUTION, "--json"])

    assert shown.exit_code == 0, shown.output
    assert "await" not in json.loads(shown.stdout)
    assert not [r for r in api.requests if r.url.path.endswith("/await")]


def test_workers_at_80_columns_show_the_state_and_with_wide_where_they_listen(
    api: FakeApi,
) -> None:
    route = "/tpf/admin/tenants/default/pipelines/org.example.greeting/workers"
    listed = [
        {
            "workerId": f"worker-{n}@host-with-a-long-name.internal.example.com",
            "releaseVersion": "1.0.0",
            "state": state,
            "protocol": "rest",
            "endpoint": f"http://10.0.0.{n}:8080/tpf/transitions",
            "lastHeartbeatAtEpochMs": 1_764_700_000_000,
        }
        for n, state in [(1, "HEALTHY"), (2, "DRAINING")]
    ]
    api.answer("GET", route, listed)

    narrow = CliRunner().invoke(workers.app, ["list", "org.example.greeting"])
    wide = CliRunner().invoke(workers.app, ["list", "org.example.greeting", "--wide"])
    as_json = CliRunner().invoke(workers.app, ["list", "org.example.greeting", "--json"])

    assert narrow.exit_code == 0, narrow.output
    assert "HEALTHY" in narrow.stdout and "DRAINING" in narrow.stdout
    assert "protocol" not in narrow.stdout and "protocol" in wide.stdout
    assert "DRAINING" in wide.stdout
    assert widest(narrow.stdout) <= 80 and widest(wide.stdout) <= 80
    assert json.loads(as_json.stdout) == listed


def test_releases_at_80_columns_drop_the_digest_unless_wide(api: FakeApi) -> None:
    route = "/tpf/admin/tenants/default/pipelines/org.example.greeting/releases"
    listed = [
        {
            "releaseVersion": version,
            "active": version == "2.0.0",
            "contractVersion": "sha256:" + "c" * 64,
            "primaryArtifactDigest": "sha256:" + "d" * 64,
            "registeredAtEpochMs": 1_764_700_000_000,
            "activatedAtEpochMs": 1_764_700_100_000,
        }
        for version in ("1.0.0", "2.0.0")
    ]
    api.answer("GET", route, listed)

    narrow = CliRunner().invoke(release.app, ["list", "org.example.greeting"])
    wide = CliRunner().invoke(release.app, ["list", "org.example.greeting", "--wide"])

    assert narrow.exit_code == 0, narrow.output
    assert "c" * 12 in narrow.stdout and "d" * 12 not in narrow.stdout
    assert "d" * 12 in wide.stdout
    assert widest(narrow.stdout) <= 80 and widest(wide.stdout) <= 80


def test_pending_approvals_keep_the_interaction_id_whole_for_approve_to_take_back(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    interaction = "9" * 32 + "-0"
    order = "5f0c7a9e-1d2b-4c3a-9e8f-7a6b5c4d3e2f"
    pending = [
        {
            "interactionId": interaction,
            "deadlineEpochMs": time.time() * 1000 + (29 * 60 + 30) * 1000,
            "requestPayload": {
                "orderId": order,
                "restaurantName": "Trattoria da Ada, Via dei Calcolatori 42",
                "customerName": "Grace Hopper",
                "totalAmount": 23.5,
                "currency": "EUR",
                "items": "2 margherita, 1 tiramisù",
            },
        }
    ]
    api.answer("GET", "/tpf/control-plane/tenants/default/interactions/pending", pending)

    narrow = CliRunner().invoke(approvals.app, ["list"])
    wide = CliRunner().invoke(approvals.app, ["list", "--wide"])
    monkeypatch.setattr(common.out, "width", 200)
    roomy = CliRunner().invoke(approvals.app, ["list", "--wide"])

    assert narrow.exit_code == 0, narrow.output
    assert (
        interaction in narrow.stdout and "23.5 EUR" in narrow.stdout and "in 29m" in narrow.stdout
    )
    assert order[:8] in narrow.stdout and order not in narrow.stdout
    assert "Grace Hopper" not in narrow.stdout and "Grace Hopper" in roomy.stdout
    assert interaction in wide.stdout and order in roomy.stdout
    assert widest(narrow.stdout) <= 80 and widest(wide.stdout) <= 80


def test_an_operator_action_shows_the_new_status_whole(api: FakeApi) -> None:
    acted = {
        "executionId": EXECUTION,
        "previousStatus": "WAITING_EXTERNAL",
        "status": "FAILED",
        "errorCode": "CANCELLED",
        "errorMessage": "cancelled by ada@ops.example.com: " + "not needed any more " * 6,
    }
    api.answer("POST", f"/tpf/admin/tenants/default/executions/{EXECUTION}/cancel", acted)

    shown = CliRunner().invoke(operations.app, ["cancel", EXECUTION])

    assert shown.exit_code == 0, shown.output
    assert "WAITING_EXTERNAL" in shown.stdout and widest(shown.stdout) <= 80


def test_dead_letter_counts_and_peeks_read_at_80_columns() -> None:
    counted = [
        {
            "queue": "work-org.pipelineframework.csvpayments-1.0.0",
            "dlq": "tpf-production-work-org.pipelineframework.csvpayments-1.0.0-dlq",
            "exists": True,
            "visible": 3,
            "inFlight": 0,
        }
    ]
    message_id = "3c9b1e7a-4f2d-4e8a-9b6c-1d2e3f4a5b6c"
    peeked = [
        {
            "messageId": message_id,
            "receiveCount": 5,
            "sentAt": "2026-12-03T10:00:00+00:00",
            "executionId": EXECUTION,
            "summary": f"transition work {EXECUTION} {EXECUTION}:2:0 RUNNING",
        }
    ]

    counts = rendered(dlq.count_table(counted, wide=False))
    peek = rendered(dlq.peek_table("tpf-production-work-dlq", peeked, wide=False))
    peek_wide = rendered(dlq.peek_table("tpf-production-work-dlq", peeked, wide=True), 200)

    assert "tpf-production" not in counts and widest(counts) <= 80
    assert message_id[:8] in peek and message_id not in peek and EXECUTION not in peek
    assert "RUNNING" in peek and widest(peek) <= 80
    assert message_id in peek_wide and EXECUTION in peek_wide
