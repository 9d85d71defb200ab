"""Execution state changes, each one conditional write (REFERENCE section 2).

| operation         | may start from                | guard                     | effect       |
|-------------------|-------------------------------|---------------------------|--------------|
| submit            | absent (or logically expired) | attribute_not_exists      | QUEUED, v0   |
| dispatch          | QUEUED, WAIT_RETRY            | version (+ due: sweeper)  | RUNNING      |
| renew (heartbeat) | RUNNING, WAIT_RETRY           | transition key            | deadline     |
| succeed, advance, | RUNNING, WAIT_RETRY           | version + transition key  | next state   |
| park, retry, fail |                               | (+ deadline passed)       |              |
| resume            | WAITING_EXTERNAL              | version + await unit      | QUEUED       |
| finish_await      | WAITING_EXTERNAL              | version + await unit      | SUCCEEDED    |
| redrive           | DLQ (FAILED when allowed)     | version                   | QUEUED       |
| cancel            | any non-terminal              | version                   | FAILED       |

WAIT_RETRY may carry a pre-assigned transition key: a retry whose command waits in SQS with a
delay. Its result commits like a RUNNING one, since the key is unique to that attempt.

Every successful change is also appended to the execution's history (``coordinator.history``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.history import Change, History
from coordinator.store.port import DueEntry, ExecutionTable, Guard, Page
from tpf.errors import AlreadyExists, IdempotencyKeyReused, StaleRecord
from tpf.payloads import PayloadRef
from tpf.records import (
    ACTIVE,
    ExecutionRecord,
    Status,
    cap_message,
    transition_key,
)

_DISPATCHABLE = frozenset({Status.QUEUED, Status.WAIT_RETRY})
_IN_FLIGHT = frozenset({Status.RUNNING, Status.WAIT_RETRY})


@dataclass(frozen=True)
class Submitted:
    record: ExecutionRecord
    duplicate: bool


class ExecutionStore:
    """The coordinator's view of execution records; every method is one conditional write."""

    def __init__(self, table: ExecutionTable, history: History | None = None) -> None:
        self.table, self.history = table, history

    # -- reads ------------------------------------------------------------------------------

    async def get(self, tenant_id: str, execution_id: str) -> ExecutionRecord | None:
        return await self.table.get(tenant_id, execution_id)

    async def due(self, shard: str, *, now_ms: int, limit: int = 100) -> list[DueEntry]:
        return await self.table.due(shard, now_ms=now_ms, limit=limit)

    async def page(
        self,
        *,
        statuses: Iterable[Status] | None = None,
        pipeline_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        return await self.table.page(
            statuses=statuses, pipeline_id=pipeline_id, limit=limit, cursor=cursor
        )

    # -- submit -----------------------------------------------------------------------------

    async def submit(self, record: ExecutionRecord, *, now_ms: int) -> Submitted:
        """Create a QUEUED record, or return the one the same idempotency key created."""
        try:
            await self.table.insert(record)
            self._remember(Change.of(None, record))
            return Submitted(record, duplicate=False)
        except AlreadyExists as exc:
            existing: ExecutionRecord = exc.current
        if existing.expires_at() * 1000 <= now_ms:
            # TTL deletion lags; an expired record no longer holds its key.
            guard = Guard(version=existing.version, statuses=frozenset(Status))
            await self._write(existing, record, guard)
            return Submitted(record, duplicate=False)
        if existing.input.digest != record.input.digest:
            raise IdempotencyKeyReused(
                f"idempotency key {record.execution_key!r} was used with another input",
                current=existing,
            )
        return Submitted(existing, duplicate=True)

    # -- transitions ------------------------------------------------------------------------

    async def dispatch(
        self,
        record: ExecutionRecord,
        *,
        now_ms: int,
        deadline_ms: int,
        only_if_due: bool = False,
    ) -> ExecutionRecord:
        """Start the next attempt of the current step: RUNNING with a fresh transition key."""
        attempt = record.attempt + 1
        new = record.change(
            status=Status.RUNNING,
            version=record.version + 1,
            attempt=attempt,
            transition_key=transition_key(record.execution_id, record.step_index, attempt),
            due_at_ms=deadline_ms,
            updated_at_ms=now_ms,
        )
        guard = Guard(
            version=record.version,
            statuses=_DISPATCHABLE,
            due_by_ms=now_ms if only_if_due else None,
        )
        return await self._write(record, new, guard)

    async def renew(
        self, tenant_id: str, execution_id: str, *, transition_key: str, deadline_ms: int
    ) -> None:
        """Heartbeat: extend the deadline; ``version`` stays, so no fencing is disturbed."""
        await self.table.renew(
            tenant_id,
            execution_id,
            transition_key=transition_key,
            due_at_ms=deadline_ms,
        )

    async def succeed(
        self, record: ExecutionRecord, *, transition_key: str, result: PayloadRef, now_ms: int
    ) -> ExecutionRecord:
        new = self._settled(
            record,
            now_ms,
            status=Status.SUCCEEDED,
            result=result,
            continuation=None,
            error_code=None,
            error_message=None,
        )
        return await self._write(record, new, self._in_flight(record, transition_key))

    async def advance(
        self,
        record: ExecutionRecord,
        *,
        transition_key: str,
        step_index: int,
        continuation: PayloadRef,
        now_ms: int,
        dispatch_deadline_ms: int | None = None,
        due_at_ms: int | None = None,
    ) -> ExecutionRecord:
        """Commit a transition that stopped at a boundary; optionally dispatch the next one.

        Commit and dispatch in one write halves the WRU of a multi-transition execution.
        """
        new = record.change(
            status=Status.QUEUED,
            version=record.version + 1,
            step_index=step_index,
            attempt=0,
            retries_used=0,
            continuation=continuation,
            transition_key=None,
            due_at_ms=due_at_ms if due_at_ms is not None else now_ms,
            error_code=None,
            error_message=None,
            updated_at_ms=now_ms,
        )
        if dispatch_deadline_ms is not None:
            new = new.change(
                status=Status.RUNNING,
                attempt=1,
                transition_key=_key(new, 1),
                due_at_ms=dispatch_deadline_ms,
            )
        return await self._write(record, new, self._in_flight(record, transition_key))

    async def park(
        self,
        record: ExecutionRecord,
        *,
        transition_key: str,
        await_unit_id: str,
        step_index: int,
        continuation: PayloadRef | None,
        now_ms: int,
    ) -> ExecutionRecord:
        """The transition reached an await: wait for the outside world with no due time."""
        new = record.change(
            status=Status.WAITING_EXTERNAL,
            version=record.version + 1,
            step_index=step_index,
            await_unit_id=await_unit_id,
            continuation=continuation or record.continuation,
            transition_key=None,
            due_at_ms=None,
            error_code=None,
            error_message=None,
            updated_at_ms=now_ms,
        )
        return await self._write(record, new, self._in_flight(record, transition_key))

    async def retry(
        self,
        record: ExecutionRecord,
        *,
        transition_key: str,
        error_code: str,
        message: str,
        due_at_ms: int,
        now_ms: int,
        next_transition_key: bool = False,
        timed_out: bool = False,
    ) -> ExecutionRecord:
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
        return await self._write(
            record, new, self._in_flight(record, transition_key, timed_out, now_ms)
        )

    async def fail(
        self,
        record: ExecutionRecord,
        *,
        transition_key: str | None,
        status: Status,
        error_code: str,
        message: str,
        now_ms: int,
        timed_out: bool = False,
    ) -> ExecutionRecord:
        """End in FAILED (non-retryable) or DLQ (retries exhausted)."""
        assert status in (Status.FAILED, Status.DLQ), status
        new = self._settled(
            record,
            now_ms,
            status=status,
            error_code=error_code,
            error_message=cap_message(message),
            retries_used=record.retries_used + 1,
        )
        if transition_key is None:  # an await that timed out: no transition is in flight
            guard = Guard(
                version=record.version,
                statuses=frozenset({Status.WAITING_EXTERNAL}),
                await_unit_id=record.await_unit_id,
            )
        else:
            guard = self._in_flight(record, transition_key, timed_out, now_ms)
        return await self._write(record, new, guard)

    async def resume(
        self,
        record: ExecutionRecord,
        *,
        await_unit_id: str,
        step_index: int,
        continuation: PayloadRef,
        now_ms: int,
        dispatch_deadline_ms: int | None = None,
    ) -> ExecutionRecord:
        """The await unit completed: continue after the await step."""
        new = record.change(
            status=Status.QUEUED,
            version=record.version + 1,
            step_index=step_index,
            attempt=0,
            retries_used=0,
            continuation=continuation,
            await_unit_id=None,
            transition_key=None,
            due_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        if dispatch_deadline_ms is not None:
            new = new.change(
                status=Status.RUNNING,
                attempt=1,
                transition_key=_key(new, 1),
                due_at_ms=dispatch_deadline_ms,
            )
        guard = Guard(
            version=record.version,
            statuses=frozenset({Status.WAITING_EXTERNAL}),
            await_unit_id=await_unit_id,
        )
        return await self._write(record, new, guard)

    async def finish_await(
        self, record: ExecutionRecord, *, await_unit_id: str, result: PayloadRef, now_ms: int
    ) -> ExecutionRecord:
        """The await was the pipeline's last step: its answer is the result."""
        new = self._settled(
            record, now_ms, status=Status.SUCCEEDED, result=result, continuation=None
        )
        guard = Guard(
            version=record.version,
            statuses=frozenset({Status.WAITING_EXTERNAL}),
            await_unit_id=await_unit_id,
        )
        return await self._write(record, new, guard)

    # -- operator actions -------------------------------------------------------------------

    async def redrive(
        self,
        record: ExecutionRecord,
        *,
        now_ms: int,
        actor: str,
        reason: str | None = None,
        allow_failed: bool = False,
    ) -> ExecutionRecord:
        """Queue a dead-lettered execution again at its resume point with a fresh retry budget."""
        allowed = {Status.DLQ, Status.FAILED} if allow_failed else {Status.DLQ}
        new = record.change(
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
        return await self._write(record, new, guard, actor=actor, reason=reason)

    async def cancel(
        self, record: ExecutionRecord, *, now_ms: int, actor: str, reason: str
    ) -> ExecutionRecord:
        new = self._settled(
            record,
            now_ms,
            status=Status.FAILED,
            error_code="CANCELLED",
            error_message=cap_message(reason),
        )
        guard = Guard(version=record.version, statuses=ACTIVE)
        return await self._write(record, new, guard, actor=actor, reason=reason)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
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

    @staticmethod
    def _in_flight(
        record: ExecutionRecord, transition_key: str, timed_out: bool = False, now_ms: int = 0
    ) -> Guard:
        return Guard(
            version=record.version,
            statuses=_IN_FLIGHT,
            transition_key=transition_key,
            due_by_ms=now_ms if timed_out else None,
        )

    async def _write(
        self,
        before: ExecutionRecord,
        new: ExecutionRecord,
        guard: Guard,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> ExecutionRecord:
        """Replace under ``guard``; an ``actor`` marks an operator action, recorded durably."""
        await self.table.replace(new, guard)
        if actor is None:
            self._remember(Change.of(before, new))
        elif self.history is not None:
            await self.history.record_now(Change.of(before, new, actor=actor, reason=reason))
        return new

    def _remember(self, change: Change) -> None:
        if self.history is not None:
            self.history.record(change)


def _key(record: ExecutionRecord, attempt: int) -> str:
    return transition_key(record.execution_id, record.step_index, attempt)


__all__ = ["AlreadyExists", "ExecutionStore", "StaleRecord", "Submitted"]
