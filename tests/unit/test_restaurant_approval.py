"""The restaurant approval's models are TPF's: what its clients send is read, and what they
read is written, in the forms upstream's demo client and integration test use."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from examples.restaurant_approval import (
    PendingRestaurantApproval,
    PlaceRestaurantOrderRequest,
    RestaurantDecision,
    RestaurantOrderAccepted,
    RestaurantOrderDeclined,
    decided,
)
from tpf.codec import decode_envelope
from tpf.errors import NonRetryable

ORDER_ID = "3b241101-e2bb-4255-8caf-4136c566a962"
AT = "2026-08-22T17:48:23.123456Z"


def test_the_demo_clients_order_is_read_as_tpf_reads_it() -> None:
    # As TPF's self-host demo client submits it: items one string, the amount a string.
    order = PlaceRestaurantOrderRequest.model_validate(
        {
            "requestId": "9b2f6c1e-1d3a-4b5c-8d7e-0f1a2b3c4d5e",
            "customerName": "Ada Lovelace",
            "restaurantName": "Cafe TPF",
            "items": "Margherita Pizza, Sparkling Water",
            "totalAmount": "27.50",
            "currency": "EUR",
        }
    )
    assert order.items == "Margherita Pizza, Sparkling Water"
    assert isinstance(order.request_id, uuid.UUID)
    assert order.model_dump(mode="json")["totalAmount"] == 27.5  # a JSON number, as upstream


def test_the_pending_approval_carries_the_order_id_the_client_reads() -> None:
    fields = set(PendingRestaurantApproval.model_json_schema()["properties"])
    assert fields == {
        "id",
        "orderId",
        "requestId",
        "customerName",
        "restaurantName",
        "items",
        "totalAmount",
        "currency",
        "createdAt",
    }


def nested_map(decision: dict[str, Any]) -> dict[str, Any]:
    """A decision as TPF's demo client encodes it: ``java.util.Map`` envelopes all the way."""

    def envelope(value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            items = {k: envelope(v) for k, v in value.items()}
            payload, type_id = {"items": items}, "java.util.Map"
        else:
            payload, type_id = value, "java.lang.String"
        return {
            "payloadTypeId": type_id,
            "payloadEncoding": "application/tpf-transition+json",
            "payload": json.dumps(payload, separators=(",", ":")),
        }

    return envelope(decision)


@pytest.mark.parametrize(
    ("sent", "kind"),
    [
        (
            {"accepted": {"orderId": ORDER_ID, "decidedAt": AT, "note": "ok"}},
            RestaurantOrderAccepted,
        ),
        ({"declined": {"orderId": ORDER_ID, "decidedAt": AT}}, RestaurantOrderDeclined),
        ({"type": "accepted", "orderId": ORDER_ID, "decidedAt": AT}, RestaurantOrderAccepted),
        (
            {"type": "declined", "declined": {"orderId": ORDER_ID, "decidedAt": AT}},
            RestaurantOrderDeclined,
        ),
        ({"orderId": ORDER_ID, "decidedAt": AT, "declineReason": "x"}, RestaurantOrderDeclined),
        ({"orderId": ORDER_ID, "decidedAt": AT}, RestaurantOrderAccepted),
    ],
)
def test_decisions_are_read_in_every_form_tpf_reads(sent: dict[str, Any], kind: type) -> None:
    decision = RestaurantDecision.model_validate(
        decode_envelope(nested_map(sent), pointer="/responsePayload")
    )
    chosen = decided(decision)
    assert isinstance(chosen, kind) and str(chosen.order_id) == ORDER_ID


@pytest.mark.parametrize(
    "sent",
    [
        {"accepted": {"orderId": "not-a-uuid", "decidedAt": AT}},
        {"accepted": {"orderId": ORDER_ID, "decidedAt": "yesterday"}},
        {"accepted": {"orderId": ORDER_ID}},
        {"note": "neither"},
    ],
)
def test_an_undecidable_decision_fails_not_retryably(sent: dict[str, Any]) -> None:
    with pytest.raises(NonRetryable) as failed:
        decided(RestaurantDecision.model_validate(sent))
    assert failed.value.error_code == "DECISION_INVALID"
