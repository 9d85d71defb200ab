"""How large an execution record is as DynamoDB bills it, and how much payload it can carry.

A record under 1 KB costs one WRU per change. A payload small enough to ride inside the record
costs nothing more to store, where a payload item costs a WRU and a read of its own. How small
is small depends on the record: ``inline_room`` grows it to the largest shape any later change
can give it (every counter at its cap, an error message at its cap, a transition key, an await
unit, the other payloads as claim checks) and leaves the payload what remains of
``RECORD_BUDGET``. So a record never passes 1 KB, however it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from tpf.payloads import MAX_INLINE, PayloadRef, digest_of
from tpf.records import (
    MAX_COUNTER,
    MAX_EPOCH_MS,
    MAX_ERROR_CODE,
    MAX_ERROR_MESSAGE,
    MAX_UNIT_ID,
    ExecutionRecord,
    Status,
    to_item,
    transition_key,
)

RECORD_BUDGET = 1000
"""Bytes a record may take: under the 1,024 of one write unit, with a margin."""
Slot = Literal["input", "continuation", "result"]
_SMALLEST_LATER = max(
    PayloadRef(tier="s3", digest=digest_of(b"")),
    PayloadRef.of_inline("x" * MAX_INLINE),
    key=lambda ref: len(ref.compact()),
)
"""The least a continuation to come may take: a claim check, or the inline floor."""
_LONGEST_STATUS = max(Status, key=lambda s: len(s.value))
_MAX_SHARDS = 256


def number_size(value: int | Decimal) -> int:
    """DynamoDB: one byte per two significant digits, plus one."""
    digits = str(abs(int(value))).strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def item_size(item: Mapping[str, Any]) -> int:
    """Item size as DynamoDB bills it: attribute names plus values (strings and numbers)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, int | Decimal):
            size += number_size(value)
        else:
            raise TypeError(f"unexpected attribute type {type(value)} for {name}")
    return size


def inline_room(record: ExecutionRecord, slot: Slot) -> int:
    """Bytes of JSON ``slot`` may hold inline while every later shape of ``record`` fits
    ``RECORD_BUDGET``; never less than the fixed ``MAX_INLINE`` every record has room for."""
    shape = _succeeded(record) if slot == "result" else _largest_in_flight(record, slot)
    return max(MAX_INLINE, RECORD_BUDGET - item_size(to_item(shape, shards=_MAX_SHARDS)))


def _succeeded(record: ExecutionRecord) -> ExecutionRecord:
    """The one shape a record with a result takes. SUCCEEDED is final, and succeeding clears
    the continuation, the deadline, the keys and the error (``coordinator.store.moves``)."""
    return record.change(
        status=Status.SUCCEEDED,
        version=record.version + 1,
        updated_at_ms=MAX_EPOCH_MS - 1,
        due_at_ms=None,
        transition_key=None,
        await_unit_id=None,
        continuation=None,
        error_code=None,
        error_message=None,
        result=PayloadRef.of_inline(""),
    )


def _largest_in_flight(record: ExecutionRecord, slot: Slot) -> ExecutionRecord:
    """Every field at its cap at once: larger than any shape the record can take before it
    succeeds. A continuation to come counts at its floor: its own room is reckoned then."""
    later = {} if slot == "continuation" else {"continuation": _larger(record.continuation)}
    return record.change(
        status=_LONGEST_STATUS,
        version=MAX_COUNTER - 1,
        attempt=MAX_COUNTER - 1,
        retries_used=MAX_COUNTER - 1,
        redrive_generation=MAX_COUNTER - 1,
        step_index=10_000,
        due_at_ms=MAX_EPOCH_MS - 1,
        updated_at_ms=MAX_EPOCH_MS - 1,
        transition_key=transition_key(record.execution_id, 10_000, MAX_COUNTER - 1),
        await_unit_id="u" * MAX_UNIT_ID,
        error_code="E" * MAX_ERROR_CODE,
        error_message="e" * MAX_ERROR_MESSAGE,
        result=None,
        **later,
        **{slot: PayloadRef.of_inline("")},
    )


def _larger(ref: PayloadRef | None) -> PayloadRef:
    """What the continuation may hold later: at least ``_SMALLEST_LATER``."""
    if ref is not None and len(ref.compact()) > len(_SMALLEST_LATER.compact()):
        return ref
    return _SMALLEST_LATER
