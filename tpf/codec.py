"""TPF's payload envelope: ``{payloadTypeId, payloadEncoding, payload}``, payload a JSON string.

TPF clients encode maps as ``java.util.Map`` with ``{"items": {key: <envelope>}}`` (lists as
``java.util.List`` with a list of envelopes, scalars as ``java.lang.*``), recursively. Type ids
are labels: the payload itself is validated against the contract's schema.
"""

from __future__ import annotations

import json
from typing import Any

from tpf.errors import InvalidInput
from tpf.untrusted import check_bounds, parse_json
from tpf.wire import TRANSITION_ENCODING

MAP = "java.util.Map"
LIST = "java.util.List"
_ENVELOPE_KEYS = {"payloadTypeId", "payload"}


def _unwrap(value: Any) -> Any:
    """Turn a nested TPF envelope (or a plain value) into plain JSON."""
    if isinstance(value, dict) and value.keys() >= _ENVELOPE_KEYS:
        return decode_value(value["payloadTypeId"], value["payload"])
    return value


def decode_value(type_id: str, payload: Any, *, pointer: str = "/payload") -> Any:
    """Plain JSON from a TPF payload (a JSON string, or already-parsed JSON)."""
    if isinstance(payload, str):
        payload = parse_json(payload, pointer=pointer)
    else:
        check_bounds(payload, pointer=pointer)
    if type_id == MAP and isinstance(payload, dict) and isinstance(payload.get("items"), dict):
        return {key: _unwrap(item) for key, item in payload["items"].items()}
    if type_id == LIST and isinstance(payload, dict) and isinstance(payload.get("items"), list):
        return [_unwrap(item) for item in payload["items"]]
    return payload


def decode_envelope(envelope: Any, *, pointer: str) -> Any:
    """The plain JSON value inside ``{payloadTypeId, payloadEncoding, payload}``."""
    if not isinstance(envelope, dict):
        raise InvalidInput("expected a payload envelope object", pointer=pointer)
    if not isinstance(envelope.get("payloadTypeId"), str):
        raise InvalidInput("payloadTypeId is required", pointer=f"{pointer}/payloadTypeId")
    if "payload" not in envelope:
        raise InvalidInput("payload is required", pointer=f"{pointer}/payload")
    encoding = envelope.get("payloadEncoding", TRANSITION_ENCODING)
    if encoding not in (TRANSITION_ENCODING, "application/json"):
        raise InvalidInput(
            f"unsupported payloadEncoding {encoding!r}", pointer=f"{pointer}/payloadEncoding"
        )
    return decode_value(
        envelope["payloadTypeId"], envelope["payload"], pointer=f"{pointer}/payload"
    )


def encode_envelope(type_id: str, value: Any) -> dict[str, str]:
    """A plain-JSON envelope, the form every TPF client decodes."""
    return {
        "payloadTypeId": type_id,
        "payloadEncoding": TRANSITION_ENCODING,
        "payload": json.dumps(value, separators=(",", ":"), sort_keys=True),
    }
