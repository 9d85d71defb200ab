"""What TPF's clients put on the wire, rebuilt from upstream's specification (not its code).

Each helper cites the upstream file whose behaviour it reproduces, at the commit the suite was
written against; a change upstream is a change here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

UPSTREAM = "The-Pipeline-Framework/pipelineframework@a7f169b"
DEMO_CLIENT = "examples/restaurant-approval/self-host/demo-client.py"
SELF_HOST = "examples/restaurant-approval/self-host"

ENCODING = "application/tpf-transition+json"
ORDER_TYPE = "org.pipelineframework.restaurantapproval.common.dto.PlaceRestaurantOrderRequestDto"
TOKEN = "restaurant-control-plane-admin-token"
"""The self-host scripts' default for both the control-plane and the admin token."""
TENANT = "restaurant-demo"
PIPELINE = "org.pipelineframework.restaurantapproval"
AWAIT_STEP = "ProcessAwaitRestaurantDecisionService"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def envelope(value: Any, type_id: str | None = None) -> dict[str, str]:
    """The demo client's payload encoding (``encoded_payload`` in DEMO_CLIENT): maps and lists
    as ``java.util.Map`` / ``java.util.List`` envelopes of envelopes, scalars typed as
    ``java.lang.*``, a value with an explicit type as its compact JSON."""
    if value is None:
        type_id, payload = "null", "null"
    elif isinstance(value, dict) and type_id in (None, "java.util.Map"):
        type_id = "java.util.Map"
        payload = _compact({"items": {k: envelope(v) for k, v in value.items()}})
    elif isinstance(value, list) and type_id is None:
        type_id, payload = "java.util.List", _compact({"items": [envelope(v) for v in value]})
    elif type_id is not None:
        payload = _compact(value)
    else:
        scalar = {str: "java.lang.String", bool: "java.lang.Boolean", int: "java.lang.Long"}
        type_id, payload = scalar.get(type(value), "java.lang.Double"), _compact(value)
    return {"payloadTypeId": type_id, "payloadEncoding": ENCODING, "payload": payload}


def submit_body(customer: str, restaurant: str) -> dict[str, Any]:
    """DEMO_CLIENT ``submit-order`` / ``run_one``: items one string, the amount a string."""
    request_id = str(uuid.uuid4())
    order = {
        "requestId": request_id,
        "customerName": customer,
        "restaurantName": restaurant,
        "items": "Margherita Pizza, Sparkling Water",
        "totalAmount": "27.50",
        "currency": "EUR",
    }
    return {
        "pipelineId": PIPELINE,
        "inputShape": "UNI",
        "inputPayload": envelope(order, ORDER_TYPE),
        "idempotencyKey": f"order-{request_id}",
        "outputStreaming": False,
    }


def decided_at() -> str:
    """ISO-8601 in UTC with microseconds and a ``Z``, as DEMO_CLIENT writes ``decidedAt``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def complete_body(
    interaction_id: str, decision: dict[str, Any], *, key: str, actor: str
) -> dict[str, Any]:
    """DEMO_CLIENT ``complete``: the decision as a nested ``java.util.Map``, with no ``type``."""
    return {
        "interactionId": interaction_id,
        "idempotencyKey": key,
        "responsePayload": envelope(decision, "java.util.Map"),
        "actor": actor,
    }


def accepted(order_id: str) -> dict[str, Any]:
    return {
        "accepted": {"orderId": order_id, "decidedAt": decided_at(), "note": "Approved by Cafe TPF"}
    }


def declined(order_id: str) -> dict[str, Any]:
    return {
        "declined": {
            "orderId": order_id,
            "decidedAt": decided_at(),
            "note": "Need more prep time",
            "declineReason": "Kitchen is overloaded tonight",
        }
    }


def incident(_: str) -> dict[str, Any]:
    """DEMO_CLIENT ``run-incident``: a decision the API accepts and finalize cannot."""
    return {
        "accepted": {
            "orderId": "not-a-uuid",
            "decidedAt": decided_at(),
            "note": "This completion is intentionally invalid for the incident demo.",
        }
    }


def create_release(
    artifact: Path, pipeline_id: str, release_version: str | None = None
) -> dict[str, Any]:
    """DEMO_CLIENT ``create-release``: the descriptor TPF's tooling writes for an artifact,
    from the contract at ``META-INF/pipeline/pipeline-contract.json`` inside it: kind ``jar``,
    the artifact's absolute path with no scheme, no contract, the release version defaulting
    to the contract version."""
    with (
        zipfile.ZipFile(artifact) as jar,
        jar.open("META-INF/pipeline/pipeline-contract.json") as f,
    ):
        contract = json.load(f)
    assert contract.get("pipelineId") == pipeline_id
    return {
        "schemaVersion": 1,
        "pipelineId": pipeline_id,
        "contractVersion": contract["contractVersion"],
        "releaseVersion": release_version or contract["contractVersion"],
        "artifacts": [
            {
                "artifactId": "restaurant-approval-monolith",
                "kind": "jar",
                "uri": str(artifact.resolve()),
                "digest": f"sha256:{hashlib.sha256(artifact.read_bytes()).hexdigest()}",
                "stepIds": [step.get("authoredName") for step in contract.get("steps", [])],
                "capabilities": ["local-transition-execution", "rest-transition-worker"],
            }
        ],
    }
