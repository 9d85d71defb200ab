"""The due index is keyed by a wake time, a lower bound of the due time that most moves keep,
so they write the executions table and not its index (``ExecutionRecord.change``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinator.store import moves
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, new_execution

LEASE = 60_000
INPUT = PayloadRef.of_inline('{"orderId":"o-1"}')


def submitted(at: int) -> ExecutionRecord:
    return new_execution(
        tenant_id="acme",
        pipeline_id="p",
        idempotency_key="k",
        contract_version="sha256:" + "0" * 64,
        release_version="r1",
        input=INPUT,
        now_ms=at,
        dispatch_deadline_ms=at + LEASE,
    )


def park(record: ExecutionRecord, at: int, due: int) -> ExecutionRecord:
    assert record.transition_key is not None
    return moves.park(
        record,
        transition_key=record.transition_key,
        await_unit_id="u1",
        step_index=1,
        continuation=None,
        now_ms=at,
        due_at_ms=due,
    ).new


def resume(record: ExecutionRecord, at: int) -> ExecutionRecord:
    return moves.resume(
        record,
        await_unit_id="u1",
        step_index=2,
        continuation=INPUT,
        now_ms=at,
        dispatch_deadline_ms=at + LEASE,
    ).new


def test_an_approval_answered_within_its_first_lease_keeps_one_wake_time_throughout() -> None:
    record = submitted(0)
    assert record.wake_at_ms == record.due_at_ms == LEASE
    parked = park(record, 1_000, due=86_400_000)
    resumed = resume(parked, 5_000)
    assert parked.wake_at_ms == resumed.wake_at_ms == LEASE  # the index entry never moved
    assert (parked.due_at_ms, resumed.due_at_ms) == (86_400_000, 5_000 + LEASE)
    assert resumed.transition_key is not None
    succeeded = moves.succeed(
        resumed, transition_key=resumed.transition_key, result=INPUT, now_ms=6_000
    ).new
    assert succeeded.wake_at_ms is None and succeeded.due_at_ms is None


def test_a_wake_time_that_passed_or_comes_after_the_due_time_follows_the_due_time() -> None:
    record = submitted(0)
    late = park(record, LEASE + 1, due=86_400_000)  # parked after its wake time passed
    assert late.wake_at_ms == 86_400_000
    resumed = resume(late, LEASE + 2)  # due sooner than the wake time: the wake time follows
    assert resumed.wake_at_ms == resumed.due_at_ms == LEASE + 2 + LEASE


def test_a_kept_wait_is_looked_at_exactly_then() -> None:
    parked = park(submitted(0), 1_000, due=86_400_000)
    kept = moves.keep_waiting(parked, due_at_ms=90_000_000).new
    assert kept.wake_at_ms == kept.due_at_ms == 90_000_000


@given(st.lists(st.tuples(st.integers(0, 10**9), st.one_of(st.none(), st.integers(0, 10**9)))))
def test_the_wake_time_is_never_after_the_due_time(changes: list[tuple[int, int | None]]) -> None:
    record = submitted(0)
    for now, due in sorted(changes, key=lambda c: c[0]):
        record = record.change(updated_at_ms=now, due_at_ms=due)
        if record.due_at_ms is None:
            assert record.wake_at_ms is None
        else:
            assert record.wake_at_ms is not None and record.wake_at_ms <= record.due_at_ms
            assert record.wake_at_ms > now or record.wake_at_ms == record.due_at_ms
