from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.store import moves
from tpf.payloads import MAX_INLINE, PayloadRef, digest_of
from tpf.record_size import RECORD_BUDGET, inline_room, item_size
from tpf.records import (
    MAX_COUNTER,
    MAX_EPOCH_MS,
    MAX_ERROR_CODE,
    MAX_ERROR_MESSAGE,
    MAX_KEY,
    MAX_PIPELINE,
    MAX_RELEASE,
    MAX_TENANT,
    MAX_UNIT_ID,
    SEARCH_LANE,
    ExecutionRecord,
    Status,
    cap_message,
    execution_id_for,
    from_item,
    new_execution,
    to_item,
    transition_key,
)

INLINE = PayloadRef.of_inline('"' + "x" * (MAX_INLINE - 2) + '"')
BIG_COUNTER = MAX_COUNTER - 1  # 999999999: nine significant digits
BIG_TIME = MAX_EPOCH_MS - 1


def worst_case_record(status: Status) -> ExecutionRecord:
    """The largest record each status can hold, with every field it may carry at its cap."""
    execution_id = execution_id_for("t" * MAX_TENANT, "p" * MAX_PIPELINE, "k" * MAX_KEY)
    record = ExecutionRecord(
        tenant_id="t" * MAX_TENANT,
        execution_id=execution_id,
        execution_key="k" * MAX_KEY,
        pipeline_id="p" * MAX_PIPELINE,
        contract_version="sha256:" + "f" * 64,
        release_version="r" * MAX_RELEASE,
        status=status,
        version=BIG_COUNTER,
        step_index=9_999,
        attempt=BIG_COUNTER,
        retries_used=BIG_COUNTER,
        redrive_generation=BIG_COUNTER,
        input=INLINE,
        continuation=PayloadRef(tier="s3", digest=digest_of(b"c")),
        created_at_ms=BIG_TIME,
        updated_at_ms=BIG_TIME,
    )
    error = {"error_code": "E" * MAX_ERROR_CODE, "error_message": cap_message("é" * 1000)}
    key = transition_key(execution_id, 9_999, BIG_COUNTER)
    if status in (Status.QUEUED, Status.RUNNING, Status.WAIT_RETRY):
        record = record.change(due_at_ms=BIG_TIME, transition_key=key, **error)
    elif status is Status.WAITING_EXTERNAL:
        record = record.change(await_unit_id="u" * MAX_UNIT_ID)
    elif status is Status.SUCCEEDED:
        record = record.change(continuation=None, result=INLINE)
    else:
        record = record.change(**error)
    return record


@pytest.mark.parametrize("status", list(Status))
def test_the_worst_case_record_of_every_status_stays_under_one_kilobyte(status: Status) -> None:
    size = item_size(to_item(worst_case_record(status), shards=256))
    assert size < 1024, f"{status}: {size} bytes"


@pytest.mark.parametrize("status", list(Status))
def test_a_record_survives_the_trip_through_its_item(status: Status) -> None:
    record = worst_case_record(status)
    assert from_item(to_item(record, shards=8)) == record


def test_records_without_pending_work_carry_no_due_index_keys() -> None:
    item = to_item(worst_case_record(Status.SUCCEEDED), shards=8)
    assert "ds" not in item and "dt" not in item


def test_execution_ids_are_deterministic_per_tenant_pipeline_and_key() -> None:
    assert execution_id_for("a", "p", "k") == execution_id_for("a", "p", "k")
    assert execution_id_for("a", "p", "k") != execution_id_for("b", "p", "k")
    assert execution_id_for("a", "p", "k") != execution_id_for("a", "q", "k")


@given(st.text(max_size=2000))
def test_capped_messages_fit_their_byte_budget(message: str) -> None:
    capped = cap_message(message)
    assert len(capped.encode()) <= MAX_ERROR_MESSAGE
    if len(message.encode()) <= MAX_ERROR_MESSAGE:
        assert capped == message


@pytest.mark.parametrize("tier", ["item", "s3"])
def test_payload_references_round_trip_through_their_compact_form(tier: str) -> None:
    ref = PayloadRef(tier=tier, digest=digest_of(b"payload"))  # type: ignore[arg-type]
    assert PayloadRef.from_compact(ref.compact()) == ref


@pytest.mark.parametrize("status", list(Status))
def test_every_record_carries_its_search_lane_and_only_failures_share_one(status: Status) -> None:
    item = to_item(worst_case_record(status), shards=8)
    lane = "F" if status in (Status.FAILED, Status.DLQ) else "E"
    assert item[SEARCH_LANE] == f"{worst_case_record(status).tenant_id}#{lane}"


_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1)


def _payload(size: int, room: int) -> PayloadRef:
    if size > room:
        return PayloadRef(tier="item", digest=digest_of(b"x" * size))
    return PayloadRef.of_inline('"' + "x" * max(0, size - 2) + '"')


@given(
    tenant=_ID.filter(lambda t: t[0].isalnum()).map(lambda t: t[:MAX_TENANT]),
    pipeline=_ID.map(lambda t: "p" + t[: MAX_PIPELINE - 1]),
    key=_ID.map(lambda t: t[:MAX_KEY]),
    release=_ID.map(lambda t: "r" + t[: MAX_RELEASE - 1]),
    sizes=st.tuples(*[st.integers(min_value=2, max_value=1200)] * 3),
)
def test_payloads_inlined_into_the_room_never_take_a_record_past_its_budget(
    tenant: str, pipeline: str, key: str, release: str, sizes: tuple[int, int, int]
) -> None:
    """Every payload inlined as far as its room allows; then every field at its cap at once,
    a shape larger than any the record takes in flight; then succeeded: within the budget."""
    record = new_execution(
        tenant_id=tenant,
        pipeline_id=pipeline,
        idempotency_key=key,
        contract_version="sha256:" + "f" * 64,
        release_version=release,
        input=PayloadRef.of_inline(""),
        now_ms=BIG_TIME,
        dispatch_deadline_ms=BIG_TIME,
    )
    record = record.change(input=_payload(sizes[0], inline_room(record, "input")))
    record = record.change(continuation=_payload(sizes[1], inline_room(record, "continuation")))
    in_flight = record.change(
        status=Status.WAITING_EXTERNAL,
        version=BIG_COUNTER,
        attempt=BIG_COUNTER,
        retries_used=BIG_COUNTER,
        redrive_generation=BIG_COUNTER,
        step_index=10_000,
        due_at_ms=BIG_TIME,
        updated_at_ms=BIG_TIME,
        transition_key=transition_key(record.execution_id, 10_000, BIG_COUNTER),
        await_unit_id="u" * MAX_UNIT_ID,
        error_code="E" * MAX_ERROR_CODE,
        error_message=cap_message("é" * 1000),
    )
    assert item_size(to_item(in_flight, shards=256)) <= RECORD_BUDGET
    succeeded = moves.succeed(
        in_flight,
        transition_key=in_flight.transition_key or "",
        result=_payload(sizes[2], inline_room(in_flight, "result")),
        now_ms=BIG_TIME,
    ).new
    assert item_size(to_item(succeeded, shards=256)) <= RECORD_BUDGET


def test_a_record_with_short_ids_takes_a_small_payload_inline() -> None:
    record = new_execution(
        tenant_id="acme",
        pipeline_id="org.pipelineframework.restaurantapproval",
        idempotency_key=str(uuid.uuid4()),
        contract_version="sha256:" + "f" * 64,
        release_version="1.0.0",
        input=PayloadRef.of_inline(""),
        now_ms=1_800_000_000_000,
        dispatch_deadline_ms=1_800_000_030_000,
    )
    assert inline_room(record, "input") >= 200
