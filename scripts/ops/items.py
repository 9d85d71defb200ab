"""Stored items in the API's words.

DynamoDB attribute names are short so an execution record stays under 1 KB (one WRU per state
change); the layouts are documented beside their writers: ``tpf/records.py`` (executions),
``coordinator/history/dynamodb.py`` (history), ``coordinator/awaits/model.py`` (await units and
interactions). Here each short name is spelled out once, in the camelCase the HTTP API uses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def number(value: Any) -> int | None:
    """DynamoDB numbers arrive as Decimal; every number these tables hold is an integer."""
    return None if value is None else int(value)


def when(epoch_ms: int | None) -> str | None:
    """Epoch milliseconds as a UTC timestamp for a table cell."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _split(partition_key: str) -> tuple[str, str]:
    """``<tenant>#<id>``: the key shape of every execution, history and awaits item."""
    tenant_id, _, rest = partition_key.partition("#")
    return tenant_id, rest


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def execution(item: dict[str, Any]) -> dict[str, Any]:
    tenant_id, execution_id = _split(item["pk"])
    return {
        "executionId": execution_id,
        "tenantId": tenant_id,
        "pipelineId": item["p"],
        "executionKey": item["k"],
        "releaseVersion": item["rv"],
        "status": item["st"],
        "stepIndex": number(item["si"]),
        "attempt": number(item["at"]),
        "version": number(item["v"]),
        "transitionKey": item.get("tk"),
        "awaitUnitId": item.get("au"),
        "nextDueAtEpochMs": number(item.get("dt")),
        "createdAtEpochMs": number(item["ca"]),
        "updatedAtEpochMs": number(item["ua"]),
        "errorCode": item.get("ec"),
        "errorMessage": item.get("em"),
    }


def changes(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The history entries of one item: state changes, each keyed by the record version it
    produced. Since 2026-12 an item holds a few consecutive ones (``nx``, after the first)."""
    tenant_id, execution_id = _split(item["pk"])
    entries = [{**item, "v": item["sk"]}, *item.get("nx", ())]
    return [
        {
            "tenantId": tenant_id,
            "executionId": execution_id,
            "version": number(e["v"]),
            "atEpochMs": number(e["at"]),
            "previousStatus": e.get("ps"),
            "status": e["st"],
            "stepIndex": number(e["si"]),
            "attempt": number(e["a"]),
            "transitionKey": e.get("tk"),
            "errorCode": e.get("ec"),
            "actor": e["by"],
            "reason": e.get("why"),
            "workerId": e.get("w"),
        }
        for e in entries
    ]


_UNIT_STATUS_OF = {"PENDING": "OPEN", "COMPLETED": "COMPLETED", "TIMED_OUT": "TIMED_OUT"}


def await_unit(item: dict[str, Any]) -> dict[str, Any]:
    """A unit's item (sk "U"), or the interaction that carries a unit of one (``un``, since
    2026-12; coordinator.awaits.model.carried_unit)."""
    tenant_id, unit_id = _split(item["pk"])
    if "un" in item:  # its own fields, and what a unit of one answered by it says
        status = item["un"].get("cl") or _UNIT_STATUS_OF[item["st"]]
        own = {**item["un"], "it": False, "st": status, "d": int(status == "COMPLETED"), "n": 1}
    else:
        own = item
    return {
        "unitId": unit_id,
        "tenantId": tenant_id,
        "executionId": item["ex"],
        "stepId": item["sid"],
        "stepIndex": number(item["si"]),
        "resumeStep": number(own["rs"]),
        "transport": own["tr"],
        "itemized": bool(own["it"]),
        "status": own["st"],
        "done": number(own["d"]),
        "total": number(own["n"]),
        "createdAtEpochMs": number(item["ca"]),
        "deadlineEpochMs": number(item["dl"]),
    }


def interaction(item: dict[str, Any]) -> dict[str, Any]:
    tenant_id, unit_id = _split(item["pk"])
    item_index = int(item["sk"].removeprefix("I#"))
    # The id the interactions API takes (coordinator.awaits.model.interaction_id).
    interaction_id = f"{unit_id}-{item_index}"
    return {
        "interactionId": interaction_id,
        "unitId": unit_id,
        "itemIndex": item_index,
        "tenantId": tenant_id,
        "executionId": item["ex"],
        "stepId": item["sid"],
        "status": item["st"],
        # An inbox interaction's correlation id is its id, and is not stored (since 2026-12).
        "correlationId": item.get("cid", interaction_id),
        "request": _json(item["rq"]),
        "response": _json(item.get("rp")),
        "actor": item.get("by"),
        "createdAtEpochMs": number(item["ca"]),
        "deadlineEpochMs": number(item["dl"]),
        "completedAtEpochMs": number(item.get("at")),
    }
