from __future__ import annotations

import json

import pytest

from tpf.codec import decode_envelope, encode_envelope
from tpf.errors import InvalidInput


def java_string(value: str) -> dict[str, str]:
    return {"payloadTypeId": "java.lang.String", "payload": json.dumps(value)}


def test_a_plain_json_envelope_decodes_to_its_document() -> None:
    envelope = encode_envelope("org.example.Order", {"id": "o-1", "amount": 3})
    assert decode_envelope(envelope, pointer="/inputPayload") == {"amount": 3, "id": "o-1"}


def test_the_java_map_form_decodes_recursively() -> None:
    items = {
        "customerName": java_string("Ada"),
        "totalAmount": {"payloadTypeId": "java.lang.Double", "payload": "12.5"},
        "items": {
            "payloadTypeId": "java.util.List",
            "payload": json.dumps({"items": [java_string("soup"), java_string("bread")]}),
        },
    }
    envelope = {"payloadTypeId": "java.util.Map", "payload": json.dumps({"items": items})}
    assert decode_envelope(envelope, pointer="/inputPayload") == {
        "customerName": "Ada",
        "totalAmount": 12.5,
        "items": ["soup", "bread"],
    }


def test_a_java_class_name_is_only_a_label() -> None:
    envelope = {
        "payloadTypeId": "org.pipelineframework.restaurantapproval.common.dto."
        "PlaceRestaurantOrderRequestDto",
        "payloadEncoding": "application/tpf-transition+json",
        "payload": '{"requestId":"r-1"}',
    }
    assert decode_envelope(envelope, pointer="/inputPayload") == {"requestId": "r-1"}


@pytest.mark.parametrize(
    ("envelope", "pointer"),
    [
        ("not an object", "/inputPayload"),
        ({"payload": "{}"}, "/inputPayload/payloadTypeId"),
        ({"payloadTypeId": "x"}, "/inputPayload/payload"),
        ({"payloadTypeId": "x", "payload": "{nope"}, "/inputPayload/payload"),
        (
            {"payloadTypeId": "x", "payload": "{}", "payloadEncoding": "text/csv"},
            "/inputPayload/payloadEncoding",
        ),
    ],
)
def test_a_malformed_envelope_names_the_field_at_fault(envelope: object, pointer: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_envelope(envelope, pointer="/inputPayload")
    assert refused.value.pointer == pointer
