"""The two reference pipelines, once each, for ``tpf demo``: an order the restaurant approves
(decided here through the control-plane API, as a restaurant's client would) and a payments
CSV uploaded to the inbox bucket (answered by the provider mock in the fleet)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tpf.codec import encode_envelope
from tpf.errors import TpfError
from tpf.substrate import sync_client
from tpfctl.stack import OwnedStack
from tpfctl.uploads import upload_csv

RESTAURANT = "org.pipelineframework.restaurantapproval"
AWAIT_STEP = "ProcessAwaitRestaurantDecisionService"
ORDER_TYPE = "org.pipelineframework.restaurantapproval.common.dto.PlaceRestaurantOrderRequestDto"
SAMPLE_CSV = Path(__file__).resolve().parents[2] / "examples" / "csv_payments" / "sample.csv"
TERMINAL = {"SUCCEEDED", "FAILED", "DLQ"}


def approve_one(stack: OwnedStack, tenant: str, timeout: float) -> dict[str, Any]:
    """Submit an order, wait for its pending decision, accept it, follow it to the end."""
    with _client(stack, tenant) as api:
        order = {
            "requestId": str(uuid.uuid4()),
            "customerName": "Ada",
            "restaurantName": "Chez Lovelace",
            "items": "soup, soup",
            "totalAmount": "23.50",
            "currency": "EUR",
        }
        submitted = api.post(
            "/executions",
            json={
                "pipelineId": RESTAURANT,
                "inputShape": "UNI",
                "inputPayload": encode_envelope(ORDER_TYPE, order),
                "idempotencyKey": f"order-{order['requestId']}",
                "outputStreaming": False,
            },
        )
        submitted.raise_for_status()
        execution_id = submitted.json()["executionId"]
        pending = _until(
            lambda: next(
                (
                    i
                    for i in api.get("/interactions/pending", params={"stepId": AWAIT_STEP}).json()
                    if i["executionId"] == execution_id
                ),
                None,
            ),
            timeout,
            "the approval never reached the inbox",
        )
        decision = {
            "accepted": {
                "orderId": pending["requestPayload"]["orderId"],
                "decidedAt": datetime.now(UTC).isoformat(timespec="seconds"),
                "note": "auto-approved by tpf demo",
            }
        }
        api.post(
            "/interactions/complete",
            json={
                "interactionId": pending["interactionId"],
                "responsePayload": encode_envelope("RestaurantDecision", decision),
                "actor": "tpf-demo",
            },
        ).raise_for_status()
        return _finished(api, execution_id, timeout)


def upload_one(stack: OwnedStack, timeout: float) -> dict[str, Any]:
    """Upload the sample payments file and follow the execution its notification starts."""
    settings = stack.settings
    upload = upload_csv(
        settings, "demo/sample.csv", SAMPLE_CSV.read_bytes(), endpoints=stack.endpoints
    )
    tenant, execution_id = upload.tenant_id, upload.execution_id
    with _client(stack, tenant) as api:
        ended = _finished(api, execution_id, timeout)
    report = ended.get("result") or {}
    if report.get("outputKey"):
        output = sync_client(settings, "s3", endpoints=stack.endpoints).get_object(
            Bucket=report["outputBucket"], Key=report["outputKey"]
        )
        ended["output"] = output["Body"].read().decode()
    return ended


def _client(stack: OwnedStack, tenant: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.api_url}/tpf/control-plane/tenants/{tenant}",
        headers={"Authorization": f"Bearer {stack.control_plane_token}"},
        timeout=10,
    )


def _finished(api: httpx.Client, execution_id: str, timeout: float) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        response = api.get(f"/executions/{execution_id}")
        if response.status_code == 404:  # an upload's notification not consumed yet
            return None
        response.raise_for_status()
        status: dict[str, Any] = response.json()
        return status if status["status"] in TERMINAL else None

    status: dict[str, Any] = _until(ended, timeout, f"execution {execution_id} did not end")
    if status["status"] == "SUCCEEDED":
        payload = api.get(f"/executions/{execution_id}/result").json()["resultPayload"]
        status["result"] = json.loads(payload["payload"]) if payload else None
    return status


def _until(probe: Any, timeout: float, failure: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    raise TpfError(f"{failure} within {timeout:g}s")
