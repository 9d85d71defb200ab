"""`tpf approvals` in subprocesses, deciding restaurant orders of a running fleet."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.restaurant_approval import AWAIT_STEP, PIPELINE_ID
from tests.e2e.fleets import running_fleet
from tests.e2e.test_cli import clean_env, tpf
from tests.e2e.test_fleet import finished, submit
from tests.waiting import wait_until
from tpfctl.cli.approvals import relative
from tpfctl.stack import OwnedStack

# Each `tpf` call is a fresh process that imports the whole command; a loaded machine is slow.
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module", params=["embedded"])
def fleet(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    """Only the restaurant pipeline, on the embedded substrate: the CLI is under test here."""
    workdir = tmp_path_factory.mktemp("fleet")
    pipelines = ("examples.restaurant_approval:restaurant_approval",)
    yield from running_fleet(request, markers, workdir, pipelines=pipelines)


@pytest.fixture
def env(fleet: OwnedStack, tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path, **fleet.env, TPF_API_URL=fleet.api_url)


def order(customer: str) -> dict[str, Any]:
    return {
        "requestId": str(uuid.uuid4()),
        "customerName": customer,
        "restaurantName": "Chez Lovelace",
        "items": "soup, bread",
        "totalAmount": "23.50",
        "currency": "EUR",
    }


def waiting(api: httpx.Client, execution_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The pending interaction of each execution, once every one has reached the inbox."""

    def all_pending() -> dict[str, dict[str, Any]] | None:
        listed = api.get("/interactions/pending", params={"stepId": AWAIT_STEP}).json()
        found = {i["executionId"]: i for i in listed if i["executionId"] in execution_ids}
        return found if len(found) == len(execution_ids) else None

    return wait_until(all_pending, timeout=30, interval=0.2)  # type: ignore[return-value]


def outcome(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    assert finished(api, execution_id)["status"] == "SUCCEEDED"
    result = api.get(f"/executions/{execution_id}/result").json()["resultPayload"]
    decided: dict[str, Any] = json.loads(result["payload"])
    return decided


def test_orders_are_listed_then_approved_and_declined_from_the_cli(
    api: httpx.Client, env: dict[str, str]
) -> None:
    def approvals(*args: str) -> subprocess.CompletedProcess[str]:
        return tpf("approvals", *args, "--tenant", "acme", env=env)

    ada, bob = (
        submit(api, PIPELINE_ID, order(name)).json()["executionId"] for name in ("Ada", "Bob")
    )
    pending = waiting(api, [ada, bob])
    approving, declining = pending[ada]["interactionId"], pending[bob]["interactionId"]
    orders = {e: i["requestPayload"]["orderId"] for e, i in pending.items()}

    listed = approvals("list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {i["interactionId"]: i["requestPayload"]["orderId"] for i in json.loads(listed.stdout)}
    assert by_id[approving] == orders[ada] and by_id[declining] == orders[bob]
    shown = approvals("list")
    assert shown.returncode == 0, shown.stderr
    # The order id by its first 8 characters; the interaction id whole, for approve to take.
    expected = (approving, orders[ada][:8], "23.5 EUR", "in 29m")
    assert all(text in shown.stdout for text in expected), shown.stdout

    approved = approvals("approve", approving, "--note", "on it")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout == f"approved order {orders[ada]} ({approving}), execution {ada}\n"
    declined = approvals("decline", declining, "--reason", "out of soup", "--json")
    assert declined.returncode == 0, declined.stderr
    assert json.loads(declined.stdout) == {
        "interactionId": declining,
        "executionId": bob,
        "stepId": AWAIT_STEP,
        "status": "COMPLETED",
        "duplicate": False,
    }

    yes, no = outcome(api, ada), outcome(api, bob)
    assert (yes["outcome"], yes["orderId"]) == ("APPROVED", orders[ada])
    assert (no["outcome"], no["orderId"]) == ("DECLINED", orders[bob])
    assert "out of soup" in no["summary"]

    again = approvals("approve", approving, "--note", "on it")  # a retried command
    assert again.returncode == 0, again.stderr
    assert "(duplicate: this decision was already recorded)" in again.stdout

    overruled = approvals("decline", approving, "--reason", "too late")
    assert overruled.returncode == 2
    assert overruled.stderr.strip().splitlines() == [
        f"error: cannot decline {approving}: 409: interaction {approving} was completed with "
        "another response"
    ]
    assert outcome(api, ada)["outcome"] == "APPROVED"  # the first decision stands


def test_an_unknown_interaction_is_refused_with_one_line(env: dict[str, str]) -> None:
    unknown = tpf("approvals", "approve", "nope-0", "--tenant", "acme", env=env)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no pending interaction nope-0 in tenant acme"


def test_a_decline_without_a_reason_is_a_usage_error(tmp_path: Path) -> None:
    done = tpf("approvals", "decline", "some-0", env=clean_env(tmp_path))
    assert done.returncode == 2
    assert "Missing option '--reason'" in done.stderr and "Traceback" not in done.stderr


def test_deadlines_read_as_time_left() -> None:
    minute = 60_000
    assert [relative(ms) for ms in (-1, 45_500, 29 * minute + 59_999, 125 * minute)] == [
        "overdue",
        "in 45s",
        "in 29m",
        "in 2h05m",
    ]
