"""The execution state machine as pure rules: each returns the new record and its guard.

| rule              | may start from                | guard                     | effect       |
|-------------------|-------------------------------|---------------------------|--------------|
| submit            | absent (or logically expired) | attribute_not_exists      | QUEUED, v0   |
| dispatch          | QUEUED, WAIT_RETRY            | version (+ due: sweeper)  | RUNNING      |
| renew (heartbeat) | RUNNING, WAIT_RETRY           | transition key            | deadline     |
| succeed, advance, | RUNNING, WAIT_RETRY           | version + transition key  | next state   |
| park, retry, fail |                               | (+ deadline passed)       |              |
| keep_waiting      | WAITING_EXTERNAL              | version + await unit      | due time     |
| resume            | WAITING_EXTERNAL              | version + await unit      | QUEUED       |
| finish_await      | WAITING_EXTERNAL              | version + await unit      | SUCCEEDED    |
| redrive           | DLQ (FAILED when allowed)     | version                   | QUEUED       |
| cancel            | any non-terminal              | version                   | FAILED       |

A parked (WAITING_EXTERNAL) record is due at its await unit's deadline plus a grace, so the
sweeper settles it even if its unit never opened or was lost; ``keep_waiting`` moves that due
time (bookkeeping: the version stays, as with a heartbeat's ``renew``).

The sweeper finds records by their wake time, a lower bound of the due time that a move keeps
while it is still ahead (``ExecutionRecord.change``). An approval answered before its first
transition's deadline is parked and resumed without touching the due index; the sweeper moves
the wake time of a record it finds not yet due (``ExecutionStore.rewake``).

WAIT_RETRY may carry a pre-assigned transition key: a retry whose command waits in SQS with a
delay. Its result commits like a RUNNING one, since the key is unique to that attempt.

Nothing here does I/O: ``coordinator.store.executions`` applies a move with one conditional
write, so the rules can be read, and tested, apart from any table.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.store.port import Guard
from tpf.payloads import PayloadRef
from tpf.records import ACTIVE, ExecutionRecord, Status, cap_message, transition_key

_DISPATCHABLE = frozenset({Status.QUEUED, Status.WAIT_RETRY})
_IN_FLIGHT = frozenset({Status.RUNNING, Status.WAIT_RETRY})
_WAITING = frozenset({Status.WAITING_EXTERNAL})


@dataclass(frozen=True)
class Move:
    """A record to write, the condition to write it under, and who asked (operator moves)."""

    new: ExecutionRecord
    guard: Guard
    actor: str | None = None
    reason: str | None = None


def reclaim(expired: ExecutionRecord, record: ExecutionRecord) -> Move:
    """Submit over a record whose TTL passed but that DynamoDB has not deleted yet."""
    return Move(record, Guard(version=expired.version, statuses=frozenset(Status)))


def dispatch(
    record: ExecutionRecord, *, now_ms: int, deadline_ms: int, only_if_due: bool = False
) -> Move:
    """Start the next attempt of the current step: RUNNING with a fresh transition key."""
    attempt = record.attempt + 1
    new = record.change(
        status=Status.RUNNING,
        version=record.version + 1,
        attempt=attempt,
        transition_key=_key(record, attempt),
        due_at_ms=deadline_ms,
        updated_at_ms=now_ms,
    )
    guard = Guard(
        version=record.version,
        statuses=_DISPATCHABLE,
        due_by_ms=now_ms if only_if_due else None,
    )
    return Move(new, guard)


def succeed(
    record: ExecutionRecord, *, transition_key: str, result: PayloadRef, now_ms: int
) -> Move:
    new = _settled(
        record,
        now_ms,
        status=Status.SUCCEEDED,
        result=result,
        continuation=None,
        error_code=None,
        error_message=None,
    )
    return Move(new, _in_flight(record, transition_key))


def advance(
    record: ExecutionRecord,
    *,
    transition_key: str,
    step_index: int,
    continuation: PayloadRef,
    now_ms: int,
    dispatch_deadline_ms: int | None = None,
    due_at_ms: int | None = None,
) -> Move:
    """Commit a transition that stopped at a boundary; optionally dispatch the next one.

    Commit and dispatch in one write halves the WRU of a multi-transition execution.
    """
    new = _queued_at(
        record,
        step_index,
        continuation,
        now_ms,
        due_at_ms=due_at_ms if due_at_ms is not None else now_ms,
        dispatch_deadline_ms=dispatch_deadline_ms,
        error_code=None,
        error_message=None,
    )
    return Move(new, _in_flight(record, transition_key))


def park(
    record: ExecutionRecord,
    *,
    transition_key: str,
    await_unit_id: str,
    step_index: int,
    continuation: PayloadRef | None,
    now_ms: int,
    due_at_ms: int,
) -> Move:
    """The transition reached an await: wait for the outside world until ``due_at_ms``."""
    new = record.change(
        status=Status.WAITING_EXTERNAL,
        version=record.version + 1,
        step_index=step_index,
        await_unit_id=await_unit_id,
        continuation=continuation or record.continuation,
        transition_key=None,
        due_at_ms=due_at_ms,
        error_code=None,
        error_message=None,
        updated_at_ms=now_ms,
    )
    return Move(new, _in_flight(record, transition_key))


def keep_waiting(record: ExecutionRecord, *, due_at_ms: int) -> Move:
    """Look at a parked record again at ``due_at_ms``; nothing else changes."""
    new = record.change(due_at_ms=due_at_ms, wake_at_ms=due_at_ms)
    return Move(new, _waiting_on(record, record.await_unit_id))


def retry(
    record: ExecutionRecord,
    *,
    transition_key: str,
    error_code: str,
    message: str,
    due_at_ms: int,
    now_ms: int,
    next_transition_key: bool = False,
    timed_out: bool = False,
) -> Move:
    """Count a failed attempt and schedule the next one at ``due_at_ms``.

    With ``next_transition_key`` the next attempt's key is assigned now, because its command
    is sent at once with an SQS delay; otherwise the sweeper dispatches it when due.
    """
    new = record.change(
        status=Status.WAIT_RETRY,
        version=record.version + 1,
        retries_used=record.retries_used + 1,
        error_code=error_code,
        error_message=cap_message(message),
        due_at_ms=due_at_ms,
        transition_key=None,
        updated_at_ms=now_ms,
    )
    if next_transition_key:
        new = new.change(
            attempt=record.attempt + 1, transition_key=_key(record, record.attempt + 1)
        )
    return Move(new, _in_flight(record, transition_key, timed_out, now_ms))


def fail(
    record: ExecutionRecord,
    *,
    transition_key: str | None,
    status: Status,
    error_code: str,
    message: str,
    now_ms: int,
    timed_out: bool = False,
) -> Move:
    """End in FAILED (non-retryable) or DLQ (retries exhausted)."""
    assert status in (Status.FAILED, Status.DLQ), status
    new = _settled(
        record,
        now_ms,
        status=status,
        error_code=error_code,
        error_message=cap_message(message),
        retries_used=record.retries_used + 1,
    )
    if transition_key is None:  # an await that timed out: no transition is in flight
        return Move(new, _waiting_on(record, record.await_unit_id))
    return Move(new, _in_flight(record, transition_key, timed_out, now_ms))


def resume(
    record: ExecutionRecord,
    *,
    await_unit_id: str,
    step_index: int,
    continuation: PayloadRef,
    now_ms: int,
    dispatch_deadline_ms: int | None = None,
) -> Move:
    """The await unit completed: continue after the await step."""
    new = _queued_at(
        record,
        step_index,
        continuation,
        now_ms,
        due_at_ms=now_ms,
        dispatch_deadline_ms=dispatch_deadline_ms,
        await_unit_id=None,
    )
    return Move(new, _waiting_on(record, await_unit_id))


def finish_await(
    record: ExecutionRecord, *, await_unit_id: str, result: PayloadRef, now_ms: int
) -> Move:
    """The await was the pipeline's last step: its answer is the result."""
    new = _settled(record, now_ms, status=Status.SUCCEEDED, result=result, continuation=None)
    return Move(new, _waiting_on(record, await_unit_id))


def redrive(
    record: ExecutionRecord,
    *,
    now_ms: int,
    actor: str,
    reason: str | None = None,
    allow_failed: bool = False,
    continuation: PayloadRef | None = None,
) -> Move:
    """Queue a dead-lettered execution again at its resume point with a fresh retry budget;
    ``continuation``, when given, is the same payload stored anew."""
    allowed = {Status.DLQ, Status.FAILED} if allow_failed else {Status.DLQ}
    new = record.change(
        continuation=continuation or record.continuation,
        status=Status.QUEUED,
        version=record.version + 1,
        retries_used=0,
        redrive_generation=record.redrive_generation + 1,
        transition_key=None,
        await_unit_id=None,
        due_at_ms=now_ms,
        error_code=None,
        error_message=None,
        updated_at_ms=now_ms,
    )
    guard = Guard(version=record.version, statuses=frozenset(allowed))
    return Move(new, guard, actor=actor, reason=reason)


def cancel(record: ExecutionRecord, *, now_ms: int, actor: str, reason: str) -> Move:
    new = _settled(
        record,
        now_ms,
        status=Status.FAILED,
        error_code="CANCELLED",
        error_message=cap_message(reason),
    )
    return Move(new, Guard(version=record.version, statuses=ACTIVE), actor=actor, reason=reason)


def _settled(record: ExecutionRecord, now_ms: int, **fields: object) -> ExecutionRecord:
    """A terminal copy: no deadline, no key, so the due index forgets it."""
    return record.change(
        version=record.version + 1,
        due_at_ms=None,
        transition_key=None,
        await_unit_id=None,
        updated_at_ms=now_ms,
        **fields,
    )


def _queued_at(
    record: ExecutionRecord,
    step_index: int,
    continuation: PayloadRef,
    now_ms: int,
    *,
    due_at_ms: int,
    dispatch_deadline_ms: int | None = None,
    **fields: object,
) -> ExecutionRecord:
    """QUEUED at the start of ``step_index``, with a fresh attempt count and retry budget; or,
    with ``dispatch_deadline_ms``, RUNNING its first attempt already (one change, so the wake
    time is kept or moved once, against the record as it was)."""
    new = record.change(
        status=Status.QUEUED,
        version=record.version + 1,
        step_index=step_index,
        attempt=0,
        retries_used=0,
        continuation=continuation,
        transition_key=None,
        due_at_ms=due_at_ms if dispatch_deadline_ms is None else dispatch_deadline_ms,
        updated_at_ms=now_ms,
        **fields,
    )
    if dispatch_deadline_ms is None:
        return new
    return new.change(status=Status.RUNNING, attempt=1, transition_key=_key(new, 1))


def _in_flight(
    record: ExecutionRecord, transition_key: str, timed_out: bool = False, now_ms: int = 0
) -> Guard:
    return Guard(
        version=record.version,
        statuses=_IN_FLIGHT,
        transition_key=transition_key,
        due_by_ms=now_ms if timed_out else None,
    )


def _waiting_on(record: ExecutionRecord, await_unit_id: str | None) -> Guard:
    return Guard(version=record.version, statuses=_WAITING, await_unit_id=await_unit_id)


def _key(record: ExecutionRecord, attempt: int) -> str:
    return transition_key(record.execution_id, record.step_index, attempt)
