"""Deterministic identities of await units and interactions (REFERENCE section 3).

Deriving ids from what they identify makes every await write idempotent: a redelivered result
opens the same unit, while a re-drive (a new generation) opens a fresh one.
"""

from __future__ import annotations

import hashlib

from tpf.records import ExecutionRecord


def _id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def await_unit_id(record: ExecutionRecord, step_id: str, step_index: int) -> str:
    return _id(
        "unit",
        record.tenant_id,
        record.execution_id,
        step_id,
        step_index,
        record.redrive_generation,
    )


def interaction_id(unit_id: str, item_index: int) -> str:
    return _id("interaction", unit_id, item_index)


def correlation_id(tenant_id: str, execution_id: str, step_id: str, idempotency_key: str) -> str:
    return _id("correlation", tenant_id, execution_id, step_id, idempotency_key)
