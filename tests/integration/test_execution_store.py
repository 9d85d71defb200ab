"""One contract for the execution store, run on the fake, moto's server and DynamoDB Local."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from coordinator.store import ExecutionStore
from tests.waiting import eventually
from tpf.errors import IdempotencyKeyReused, StaleRecord
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, Status, due_shard, new_execution

NOW = 1_800_000_000_000
CONTRACT = "sha256:" + "ab" * 32


def submitted(key: str | None = None, payload: str = '{"n":1}', now: int = NOW) -> ExecutionRecord:
    return new_execution(
        tenant_id="acme",
        pipeline_id="org.example.orders",
        idempotency_key=key or uuid.uuid4().hex,
        contract_version=CONTRACT,
        release_version="1.0.0",
        input=PayloadRef.of_inline(payload),
        now_ms=now,
    )


async def running(store: ExecutionStore, now: int = NOW) -> ExecutionRecord:
    record = (await store.submit(submitted(), now_ms=now)).record
    return await store.dispatch(record, now_ms=now, deadline_ms=now + 3_000)


async def test_a_submitted_execution_is_queued_at_version_zero(
    execution_store: ExecutionStore,
) -> None:
    record = submitted()
    outcome = await execution_store.submit(record, now_ms=NOW)
    stored = await execution_store.get(*record.key)
    assert not outcome.duplicate
    assert stored == record
    assert stored.status is Status.QUEUED and stored.version == 0


async def test_a_duplicate_submit_returns_the_same_execution(
    execution_store: ExecutionStore,
) -> None:
    first = await execution_store.submit(submitted("order-1-" + uuid.uuid4().hex), now_ms=NOW)
    again = await execution_store.submit(
        submitted(first.record.execution_key, now=NOW + 5), now_ms=NOW + 5
    )
    assert again.duplicate
    assert again.record == first.record


async def test_the_same_key_with_another_input_is_refused(execution_store: ExecutionStore) -> None:
    key = uuid.uuid4().hex
    first = await execution_store.submit(submitted(key), now_ms=NOW)
    with pytest.raises(IdempotencyKeyReused) as refused:
        await execution_store.submit(submitted(key, payload='{"n":2}'), now_ms=NOW)
    assert refused.value.current == first.record


async def test_a_key_whose_execution_expired_starts_a_new_execution(
    execution_store: ExecutionStore,
) -> None:
    key = uuid.uuid4().hex
    old = (await execution_store.submit(submitted(key), now_ms=NOW)).record
    later = old.expires_at() * 1000 + 1
    fresh = await execution_store.submit(submitted(key, payload='{"n":2}', now=later), now_ms=later)
    assert not fresh.duplicate
    assert (await execution_store.get(*old.key)).input.inline == '{"n":2}'


async def test_dispatch_starts_an_attempt_with_a_fresh_transition_key(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    assert record.status is Status.RUNNING
    assert record.version == 1 and record.attempt == 1
    assert record.transition_key == f"{record.execution_id}:0:1"
    assert await execution_store.get(*record.key) == record


async def test_a_second_dispatch_from_a_stale_read_is_rejected_with_the_current_record(
    execution_store: ExecutionStore,
) -> None:
    queued = (await execution_store.submit(submitted(), now_ms=NOW)).record
    winner = await execution_store.dispatch(queued, now_ms=NOW, deadline_ms=NOW + 3_000)
    with pytest.raises(StaleRecord) as lost:
        await execution_store.dispatch(queued, now_ms=NOW, deadline_ms=NOW + 3_000)
    assert lost.value.current == winner


async def test_a_commit_with_a_stale_version_is_rejected(execution_store: ExecutionStore) -> None:
    record = await running(execution_store)
    # The deadline passed and a sweeper retried the transition: the old worker's result is late.
    taken_over = await execution_store.retry(
        record,
        transition_key=record.transition_key or "",
        error_code="TRANSITION_TIMEOUT",
        message="deadline passed",
        due_at_ms=NOW + 10_000,
        now_ms=NOW + 5_000,
        timed_out=True,
    )
    with pytest.raises(StaleRecord) as rejected:
        await execution_store.succeed(
            record,
            transition_key=record.transition_key or "",
            result=PayloadRef.of_inline("{}"),
            now_ms=NOW + 6_000,
        )
    assert rejected.value.current == taken_over


async def test_a_commit_with_another_transition_key_is_rejected(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    with pytest.raises(StaleRecord):
        await execution_store.succeed(
            record,
            transition_key=f"{record.execution_id}:0:99",
            result=PayloadRef.of_inline("{}"),
            now_ms=NOW,
        )
    assert (await execution_store.get(*record.key)) == record


async def test_a_terminal_execution_accepts_no_further_change(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    done = await execution_store.succeed(
        record,
        transition_key=record.transition_key or "",
        result=PayloadRef.of_inline("1"),
        now_ms=NOW,
    )
    assert done.status is Status.SUCCEEDED and done.due_at_ms is None
    for attempt in (
        execution_store.cancel(done, now_ms=NOW, actor="ops", reason="too late"),
        execution_store.dispatch(done, now_ms=NOW, deadline_ms=NOW + 1),
        execution_store.redrive(done, now_ms=NOW, actor="ops", allow_failed=True),
    ):
        with pytest.raises(StaleRecord):
            await attempt
    assert await execution_store.get(*record.key) == done


async def test_commit_and_next_dispatch_are_one_write(execution_store: ExecutionStore) -> None:
    record = await running(execution_store)
    nxt = await execution_store.advance(
        record,
        transition_key=record.transition_key or "",
        step_index=2,
        continuation=PayloadRef.of_inline('{"at":2}'),
        now_ms=NOW + 1,
        dispatch_deadline_ms=NOW + 3_001,
    )
    assert nxt.status is Status.RUNNING and nxt.version == record.version + 1
    assert nxt.step_index == 2 and nxt.attempt == 1
    assert nxt.transition_key == f"{record.execution_id}:2:1"
    assert await execution_store.get(*record.key) == nxt


async def park(store: ExecutionStore, record: ExecutionRecord) -> ExecutionRecord:
    """Park the running ``record`` on ``unit-1`` at step 1, due 5 s from NOW."""
    return await store.park(
        record,
        transition_key=record.transition_key or "",
        await_unit_id="unit-1",
        step_index=1,
        continuation=None,
        now_ms=NOW,
        due_at_ms=NOW + 5_000,
    )


async def test_an_await_parks_the_execution_until_its_own_unit_completes(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    parked = await park(execution_store, record)
    assert parked.status is Status.WAITING_EXTERNAL and parked.due_at_ms == NOW + 5_000
    with pytest.raises(StaleRecord):
        await execution_store.dispatch(parked, now_ms=NOW, deadline_ms=NOW + 1)
    with pytest.raises(StaleRecord):
        await execution_store.resume(
            parked,
            await_unit_id="unit-0",
            step_index=2,
            continuation=PayloadRef.of_inline("{}"),
            now_ms=NOW,
        )
    resumed = await execution_store.resume(
        parked,
        await_unit_id="unit-1",
        step_index=2,
        continuation=PayloadRef.of_inline("{}"),
        now_ms=NOW,
    )
    assert resumed.status is Status.QUEUED and resumed.step_index == 2


def listed(
    store: ExecutionStore, record: ExecutionRecord, at: int
) -> Callable[[], Awaitable[bool]]:
    """Whether the due index returns ``record`` to a sweeper at ``at``."""
    shard = due_shard(record.execution_id, 4)  # the fixtures' stores have four shards

    async def found() -> bool:
        due = await store.due(shard, now_ms=at)
        return any(e.execution_id == record.execution_id for e in due)

    return found


async def test_a_parked_record_wakes_when_its_transition_was_due_and_can_be_kept_waiting(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    parked = await park(execution_store, record)
    # The wake time of the transition that parked it stays: a lower bound of the due time.
    assert (parked.wake_at_ms, parked.due_at_ms) == (NOW + 3_000, NOW + 5_000)
    assert not await listed(execution_store, record, NOW + 2_999)()
    assert await eventually(listed(execution_store, record, NOW + 3_000), timeout=10)
    kept = await execution_store.keep_waiting(parked, due_at_ms=NOW + 9_000)
    assert (kept.version, kept.due_at_ms, kept.wake_at_ms) == (
        parked.version,
        NOW + 9_000,
        NOW + 9_000,
    )
    assert await execution_store.get(*record.key) == kept
    assert await eventually(lambda: _not(listed(execution_store, record, NOW + 8_999)), timeout=10)
    moved_on = kept.change(await_unit_id="unit-2")
    with pytest.raises(StaleRecord):
        await execution_store.keep_waiting(moved_on, due_at_ms=NOW + 1)


async def test_a_woken_record_wakes_again_at_its_due_time_as_a_heartbeat_left_it(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)  # wakes at NOW + 3 s
    key = record.transition_key or ""
    await execution_store.renew(*record.key, transition_key=key, deadline_ms=NOW + 7_000)
    assert await execution_store.rewake(record)
    stored = await execution_store.get(*record.key)
    assert stored is not None
    assert (stored.version, stored.due_at_ms, stored.wake_at_ms) == (
        record.version,
        NOW + 7_000,
        NOW + 7_000,
    )
    assert await eventually(lambda: _not(listed(execution_store, record, NOW + 6_999)), timeout=10)
    assert await eventually(listed(execution_store, record, NOW + 7_000), timeout=10)
    assert not await execution_store.rewake(record)  # another sweeper moved it first


async def test_a_parked_record_left_to_its_unit_leaves_the_due_index(
    execution_store: ExecutionStore,
) -> None:
    parked = await park(execution_store, await running(execution_store))
    assert not await execution_store.rewake(parked.change(await_unit_id="unit-2"), drop=True)
    assert await execution_store.rewake(parked, drop=True)
    stored = await execution_store.get(*parked.key)
    assert stored is not None
    assert (stored.version, stored.due_at_ms, stored.wake_at_ms) == (
        parked.version,
        NOW + 5_000,
        None,
    )
    far = NOW + 10**9
    assert await eventually(lambda: _not(listed(execution_store, parked, far)), timeout=10)
    resumed = await execution_store.resume(
        stored,
        await_unit_id="unit-1",
        step_index=2,
        continuation=PayloadRef.of_inline("{}"),
        now_ms=NOW + 6_000,
    )
    assert resumed.wake_at_ms == resumed.due_at_ms == NOW + 6_000  # back in the index


async def _not(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def test_a_sweeper_dispatches_a_retry_only_once_it_is_due(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    waiting = await execution_store.retry(
        record,
        transition_key=record.transition_key or "",
        error_code="BOOM",
        message="try again",
        due_at_ms=NOW + 1_000,
        now_ms=NOW,
    )
    assert waiting.status is Status.WAIT_RETRY and waiting.retries_used == 1
    with pytest.raises(StaleRecord):
        await execution_store.dispatch(
            waiting, now_ms=NOW + 999, deadline_ms=NOW + 5_000, only_if_due=True
        )
    again = await execution_store.dispatch(
        waiting, now_ms=NOW + 1_000, deadline_ms=NOW + 5_000, only_if_due=True
    )
    assert again.attempt == 2 and again.transition_key == f"{record.execution_id}:0:2"


async def test_a_heartbeat_extends_the_deadline_without_changing_the_version(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    key = record.transition_key or ""
    await execution_store.renew(*record.key, transition_key=key, deadline_ms=NOW + 60_000)
    renewed = await execution_store.get(*record.key)
    assert renewed.due_at_ms == NOW + 60_000 and renewed.version == record.version
    with pytest.raises(StaleRecord):
        await execution_store.renew(*record.key, transition_key=key + "x", deadline_ms=NOW + 90_000)
    with pytest.raises(StaleRecord):  # never shortens
        await execution_store.renew(*record.key, transition_key=key, deadline_ms=NOW + 30_000)
    # A sweeper that read the old deadline must not time out the renewed transition.
    with pytest.raises(StaleRecord):
        await execution_store.retry(
            record,
            transition_key=key,
            error_code="TRANSITION_TIMEOUT",
            message="late",
            due_at_ms=NOW + 4_000,
            now_ms=NOW + 3_500,
            timed_out=True,
        )


async def test_exhausted_retries_end_in_dlq_and_redrive_resets_the_budget(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    dead = await execution_store.fail(
        record,
        transition_key=record.transition_key,
        status=Status.DLQ,
        error_code="BOOM",
        message="out of attempts",
        now_ms=NOW,
    )
    assert dead.status is Status.DLQ and dead.retries_used == 1
    redriven = await execution_store.redrive(dead, now_ms=NOW + 1, actor="ops")
    assert redriven.status is Status.QUEUED
    assert redriven.version == dead.version + 1
    assert redriven.retries_used == 0 and redriven.redrive_generation == 1
    assert redriven.attempt == dead.attempt  # keys stay unique across re-drives
    with pytest.raises(StaleRecord):  # the expected version moved on
        await execution_store.redrive(dead, now_ms=NOW + 2, actor="ops")


async def test_a_failed_execution_is_redriven_only_when_allowed(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    failed = await execution_store.fail(
        record,
        transition_key=record.transition_key,
        status=Status.FAILED,
        error_code="INVALID",
        message="bad decision",
        now_ms=NOW,
    )
    with pytest.raises(StaleRecord):
        await execution_store.redrive(failed, now_ms=NOW, actor="ops")
    redriven = await execution_store.redrive(failed, now_ms=NOW, actor="ops", allow_failed=True)
    assert redriven.status is Status.QUEUED and redriven.error_code is None


async def test_cancel_fails_a_live_execution_with_its_reason(
    execution_store: ExecutionStore,
) -> None:
    record = await running(execution_store)
    cancelled = await execution_store.cancel(
        record, now_ms=NOW, actor="ops", reason="customer asked"
    )
    assert cancelled.status is Status.FAILED
    assert (cancelled.error_code, cancelled.error_message) == ("CANCELLED", "customer asked")


async def test_the_due_index_lists_exactly_the_records_with_pending_work(
    execution_store: ExecutionStore,
) -> None:
    now = int(time.time() * 1000) + 10**9 + uuid.uuid4().int % 10**6  # a moment no other test uses
    overdue = await running(execution_store, now=now)
    finished = await running(execution_store, now=now)
    await execution_store.succeed(
        finished,
        transition_key=finished.transition_key or "",
        result=PayloadRef.of_inline("1"),
        now_ms=now,
    )
    shards = [str(i) for i in range(4)]

    async def due_ids(at: int) -> set[str]:
        found = set()
        for shard in shards:
            found |= {e.execution_id for e in await execution_store.due(shard, now_ms=at)}
        return found

    async def overdue_indexed() -> bool:
        return overdue.execution_id in await due_ids(now + 3_000)

    await eventually(overdue_indexed, timeout=10)  # GSIs are eventually consistent
    assert finished.execution_id not in await due_ids(now + 3_000)
    assert overdue.execution_id not in await due_ids(now + 2_999)
