"""Execution state changes, each one conditional write (REFERENCE section 2).

The rules live in ``coordinator.store.moves``; this class applies them to a table and appends
every successful change to the execution's history (``coordinator.history``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from coordinator.history import Change, History
from coordinator.store import moves
from coordinator.store.moves import Move
from coordinator.store.port import DueEntry, ExecutionTable, Page
from coordinator.store.search import (
    ExecutionQuery,
    Positions,
    SearchPage,
    decode_cursor,
    encode_cursor,
    merge,
)
from tpf.errors import AlreadyExists, IdempotencyKeyReused, StaleRecord
from tpf.records import ExecutionRecord, Status

P = ParamSpec("P")
ACTING_WORKER: ContextVar[str | None] = ContextVar("acting_worker", default=None)
"""The worker whose result the current task is applying: the history entries of the changes
it causes name it. Set by the committer around one result (each message is its own task)."""
Applied = Callable[
    Concatenate["ExecutionStore", ExecutionRecord, P], Coroutine[Any, Any, ExecutionRecord]
]


@dataclass(frozen=True)
class Submitted:
    record: ExecutionRecord
    duplicate: bool


def _applies(rule: Callable[Concatenate[ExecutionRecord, P], Move]) -> Applied[P]:
    """A store method that computes ``rule``'s move and writes it under its guard."""

    async def method(
        store: ExecutionStore, record: ExecutionRecord, /, *args: P.args, **kwargs: P.kwargs
    ) -> ExecutionRecord:
        return await store.apply(record, rule(record, *args, **kwargs))

    method.__name__, method.__doc__ = rule.__name__, rule.__doc__
    return method


class ExecutionStore:
    """The coordinator's view of execution records; every change is one conditional write.

    Each change raises ``StaleRecord`` (carrying the current record) when its guard fails.
    """

    def __init__(self, table: ExecutionTable, history: History | None = None) -> None:
        self.table, self.history = table, history

    async def get(
        self, tenant_id: str, execution_id: str, *, consistent: bool = True
    ) -> ExecutionRecord | None:
        return await self.table.get(tenant_id, execution_id, consistent=consistent)

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

    async def search(self, query: ExecutionQuery, cursor: str | None = None) -> SearchPage:
        """One page of ``query``, newest first: a Query per lane (at most two), then the page's
        records in one read per 100 (``coordinator.store.search`` explains the index)."""
        if cursor:
            positions = decode_cursor(cursor, query)
        else:
            positions = Positions({lane: None for lane in query.lanes})
        lanes = [lane for lane in query.lanes if lane not in positions.done]
        reads = [
            self.table.lane(
                lane,
                since_ms=query.since_ms,
                until_ms=query.until_ms,
                after=positions.after.get(lane),
                # One entry more than a page holds shows whether the lane goes on.
                limit=query.limit + 1,
            )
            for lane in lanes
        ]
        pages = dict(zip(lanes, await asyncio.gather(*reads), strict=True))
        taken, positions = merge(pages, positions, query.limit)
        records = await self.table.get_many(query.tenant_id, [e.execution_id for e in taken])
        more = set(query.lanes) - positions.done
        return SearchPage(
            [r for r in records if query.matches(r)],
            encode_cursor(query, positions) if more else None,
        )

    async def rewake(self, record: ExecutionRecord, *, drop: bool = False) -> bool:
        """Look at ``record`` again at its due time (or, with ``drop``, leave a parked record to
        its await unit's deadline); bookkeeping, like ``renew``: no version, no history."""
        return await self.table.rewake(record, drop=drop)

    async def add_search_keys(self, record: ExecutionRecord) -> bool:
        """Index a record an earlier main wrote (an upgrade); False when it moved on."""
        return await self.table.add_search_keys(record)

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
            await self.apply(existing, moves.reclaim(existing, record))
            return Submitted(record, duplicate=False)
        if existing.input.digest != record.input.digest:
            raise IdempotencyKeyReused(
                f"idempotency key {record.execution_key!r} was used with another input",
                current=existing,
            )
        return Submitted(existing, duplicate=True)

    async def renew(
        self, tenant_id: str, execution_id: str, *, transition_key: str, deadline_ms: int
    ) -> None:
        """Heartbeat: extend the deadline; ``version`` stays, so no fencing is disturbed."""
        await self.table.renew(
            tenant_id, execution_id, transition_key=transition_key, due_at_ms=deadline_ms
        )

    async def keep_waiting(self, record: ExecutionRecord, *, due_at_ms: int) -> ExecutionRecord:
        """Move a parked record's due time; like ``renew``, not a change of state: the version
        stays and the history does not record it."""
        move = moves.keep_waiting(record, due_at_ms=due_at_ms)
        await self.table.replace(move.new, move.guard)
        return move.new

    dispatch = _applies(moves.dispatch)
    succeed = _applies(moves.succeed)
    advance = _applies(moves.advance)
    park = _applies(moves.park)
    retry = _applies(moves.retry)
    fail = _applies(moves.fail)
    resume = _applies(moves.resume)
    finish_await = _applies(moves.finish_await)
    redrive = _applies(moves.redrive)
    cancel = _applies(moves.cancel)

    async def apply(self, before: ExecutionRecord, move: Move) -> ExecutionRecord:
        """Replace under the move's guard; an operator's move is recorded durably."""
        await self.table.replace(move.new, move.guard)
        if move.actor is None:
            self._remember(Change.of(before, move.new, worker=ACTING_WORKER.get()))
        elif self.history is not None:
            change = Change.of(before, move.new, actor=move.actor, reason=move.reason)
            await self.history.record_now(change)
        return move.new

    def _remember(self, change: Change) -> None:
        if self.history is not None:
            self.history.record(change)


__all__ = ["ACTING_WORKER", "AlreadyExists", "ExecutionStore", "StaleRecord", "Submitted"]
