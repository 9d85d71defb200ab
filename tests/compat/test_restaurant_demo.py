"""TPF's restaurant-approval self-host demo, as its client drives it, against our stack.

Every request is the one upstream's demo client (``tpf_client.DEMO_CLIENT`` at
``tpf_client.UPSTREAM``) sends, with its headers, bodies and tokens; every assertion is what
that client reads or requires of the answer. ``run-flows`` approves one order and declines
another; ``run-incident`` completes with a decision that fails at finalize, finds the failure
in the coordinator's log and re-drives it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.compat import tpf_client as tpf
from tests.substrates import unique_stack
from tests.waiting import wait_until
from tpfctl.stack import OwnedStack, StackSpec, owned_stack

pytestmark = pytest.mark.timeout(240)
TERMINAL_FAILURES = ("FAILED", "DLQ")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedStack]:
    """``tpf up``'s stack with the self-host scripts' tokens (one value for both)."""
    spec = StackSpec(
        stack=unique_stack(),
        profile="test",
        workers=1,
        pipelines=("examples.restaurant_approval:restaurant_approval",),
        control_plane_token=tpf.TOKEN,
        admin_token=tpf.TOKEN,
    )
    with owned_stack(spec, workdir=tmp_path_factory.mktemp("compat")) as stack:
        yield stack


@pytest.fixture
def client(fleet: OwnedStack) -> Iterator[httpx.Client]:
    """The demo client's HTTP habits: JSON in and out, the bearer token, 10 s per request."""
    headers = {"Accept": "application/json", "Authorization": f"Bearer {tpf.TOKEN}"}
    with httpx.Client(base_url=fleet.api_url, headers=headers, timeout=10) as http:
        yield http


def control_plane(path: str) -> str:
    return f"/tpf/control-plane/tenants/{tpf.TENANT}{path}"


def ok(response: httpx.Response) -> Any:
    """The demo client fails on any status of 400 or more; its JSON otherwise."""
    assert response.status_code < 400, (response.status_code, response.text)
    return response.json() if response.content else None


def wait_status(client: httpx.Client, execution_id: str, wanted: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = ok(client.get(control_plane(f"/executions/{execution_id}")))
        assert wanted in TERMINAL_FAILURES or body["status"] not in TERMINAL_FAILURES, body
        return body if body["status"] == wanted else None

    return wait_until(reached, timeout=90, interval=0.2)  # type: ignore[return-value]


def pending_for(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        listed = ok(
            client.get(control_plane("/interactions/pending"), params={"stepId": tpf.AWAIT_STEP})
        )
        assert isinstance(listed, list)
        return next((i for i in listed if i["executionId"] == execution_id), None)

    interaction: dict[str, Any] = wait_until(found, timeout=90, interval=0.2)  # type: ignore[assignment]
    assert isinstance(interaction["requestPayload"], dict)
    return interaction


def park(client: httpx.Client, customer: str, restaurant: str) -> tuple[str, dict[str, Any]]:
    submitted = ok(
        client.post(control_plane("/executions"), json=tpf.submit_body(customer, restaurant))
    )
    execution_id = submitted["executionId"]
    wait_status(client, execution_id, "WAITING_EXTERNAL")
    return execution_id, pending_for(client, execution_id)


def test_the_health_probe_answers_without_a_token(fleet: OwnedStack) -> None:
    assert httpx.get(f"{fleet.api_url}/q/health/live", timeout=2).status_code == 200


@pytest.mark.parametrize(
    ("customer", "restaurant", "decide", "outcome"),
    [
        ("Ada Lovelace", "Cafe TPF", tpf.accepted, "APPROVED"),
        ("Grace Hopper", "Bistro Queue", tpf.declined, "DECLINED"),
    ],
)
def test_run_flows(
    client: httpx.Client,
    customer: str,
    restaurant: str,
    decide: Callable[[str], dict[str, Any]],
    outcome: str,
) -> None:
    execution_id, interaction = park(client, customer, restaurant)
    assert interaction["stepId"] == tpf.AWAIT_STEP
    assert interaction["outputType"].endswith("RestaurantDecision")  # what the answer must be
    order_id = interaction["requestPayload"]["orderId"]
    body = tpf.complete_body(
        interaction["interactionId"],
        decide(order_id),
        key=f"complete-{interaction['interactionId']}",
        actor="restaurant-self-host-demo",
    )
    completed = ok(client.post(control_plane("/interactions/complete"), json=body))
    assert completed["interactionId"] == interaction["interactionId"]
    wait_status(client, execution_id, "SUCCEEDED")
    result = ok(client.get(control_plane(f"/executions/{execution_id}/result")))
    terminal = json.loads(result["resultPayload"]["payload"])
    assert terminal["outcome"] == outcome and terminal["orderId"] == order_id
    assert result["status"]["status"] == "SUCCEEDED"  # TPF's status object, not a string


def test_run_incident(client: httpx.Client, fleet: OwnedStack) -> None:
    execution_id, interaction = park(client, "Katherine Johnson", "Faulty Kitchen")
    body = tpf.complete_body(
        interaction["interactionId"],
        tpf.incident(interaction["requestPayload"]["orderId"]),
        key=f"complete-invalid-{interaction['interactionId']}",
        actor="restaurant-self-host-incident-demo",
    )
    ok(client.post(control_plane("/interactions/complete"), json=body))  # valid to the API
    failed = wait_for_failure(client, execution_id)
    assert failed["errorCode"] and failed["errorMessage"]

    log = fleet.fleet.workdir / "coordinator.log"
    wait_until(
        lambda: "Execution moved to DLQ" in log.read_text() and execution_id in log.read_text(),
        timeout=20,
        interval=0.2,
    )

    redrive = {
        "allowFailed": True,
        "expectedVersion": failed["version"],
        "reason": "self-host incident demo re-drive",
    }
    ok(
        client.post(
            f"/tpf/admin/tenants/{tpf.TENANT}/executions/{execution_id}/redrive", json=redrive
        )
    )
    # The client polls at once: the re-drive must have moved the record before answering.
    moved = ok(client.get(control_plane(f"/executions/{execution_id}")))
    assert moved["version"] > failed["version"]
    again = wait_for_failure(client, execution_id)
    assert again["version"] > failed["version"]


def wait_for_failure(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30  # the demo client's fixed wait
    while time.monotonic() < deadline:
        body = ok(client.get(control_plane(f"/executions/{execution_id}")))
        if body["status"] in TERMINAL_FAILURES:
            return body  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"{execution_id} never failed")


@pytest.mark.parametrize("shape", ["MULTI", "RAW"])
def test_input_shapes_other_than_uni_are_refused_with_the_field_named(
    client: httpx.Client, shape: str
) -> None:
    """A difference (docs/tpf-compatibility.md): a pipeline here takes one input."""
    body = {**tpf.submit_body("Ada Lovelace", "Cafe TPF"), "inputShape": shape}
    refused = client.post(control_plane("/executions"), json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["pointer"] == "/inputShape"
