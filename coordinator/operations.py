"""Operator actions: re-drive (one execution or many) and cancel (REFERENCE sections 2 and 5).

Each action is one conditional write guarded by the version the operator saw (or the one just
read), and leaves a history entry with who, when, why and the previous status. A re-drive resets
the retry budget and dispatches at once; if this process dies in between, the sweeper dispatches
the QUEUED record when it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.store import ExecutionStore
from tpf.errors import Conflict, NotFound, StaleRecord
from tpf.payloads import PayloadRef
from tpf.record_size import inline_room
from tpf.records import ExecutionRecord, Status, cap_message

MAX_REASON = 160
REDRIVABLE = frozenset({Status.DLQ, Status.FAILED})


@dataclass(frozen=True)
class Acted:
    """An action's outcome: the record as the action left it, and the status it had before."""

    previous: Status
    record: ExecutionRecord


@dataclass(frozen=True)
class Selection:
    """Which executions a bulk re-drive touches. Everything given must match."""

    tenant_id: str
    statuses: frozenset[Status] = frozenset({Status.DLQ})
    pipeline_id: str | None = None
    error_code: str | None = None
    updated_after_ms: int | None = None
    updated_before_ms: int | None = None

    def matches(self, record: ExecutionRecord) -> bool:
        return (
            record.tenant_id == self.tenant_id
            and record.status in self.statuses
            and (self.pipeline_id is None or record.pipeline_id == self.pipeline_id)
            and (self.error_code is None or record.error_code == self.error_code)
            and (self.updated_after_ms is None or record.updated_at_ms >= self.updated_after_ms)
            and (self.updated_before_ms is None or record.updated_at_ms < self.updated_before_ms)
        )


@dataclass
class BulkReport:
    dry_run: bool
    matched: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Matched, then changed by someone else before our write: left alone."""


class OperatorActions:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        dispatcher: Dispatcher,
        dead_letters: DeadLetterPublisher,
        abandon_await: Callable[[ExecutionRecord, ExecutionRecord], Awaitable[None]] | None = None,
    ) -> None:
        self.store, self.dispatcher, self.dead_letters = store, dispatcher, dead_letters
        self.abandon_await = abandon_await
        """Closes the await unit of a parked execution that was cancelled (``coordinator.awaits``
        plugs in here)."""

    async def redrive(
        self,
        tenant_id: str,
        execution_id: str,
        *,
        actor: str,
        now_ms: int,
        expected_version: int | None = None,
        reason: str | None = None,
        allow_failed: bool = False,
    ) -> Acted:
        record = await self._current(tenant_id, execution_id, expected_version)
        allowed = REDRIVABLE if allow_failed else frozenset({Status.DLQ})
        if record.status not in allowed:
            hint = ""
            if record.status is Status.FAILED:
                hint = " (pass allowFailed to re-drive a FAILED one)"
            raise Conflict(
                f"execution {execution_id} is {record.status.value}; only "
                f"{' or '.join(sorted(s.value for s in allowed))} can be re-driven{hint}",
                code="NOT_REDRIVABLE",
            )
        queued = await self._guarded(
            self.store.redrive(
                record,
                now_ms=now_ms,
                actor=actor,
                reason=_reason(reason),
                allow_failed=allow_failed,
                continuation=await self._stored_on_its_own(record),
            )
        )
        with contextlib.suppress(StaleRecord):  # a sweeper dispatched it first
            await self.dispatcher.dispatch(queued, now_ms=now_ms)
        return Acted(record.status, queued)

    async def _stored_on_its_own(self, record: ExecutionRecord) -> PayloadRef | None:
        """A continuation that is an await's recorded answers, stored as a payload of its own:
        a re-drive starts the record's retention again, and the answers' does not."""
        ref, payloads = record.continuation, self.dispatcher.payloads
        if ref is None or ref.tier != "answers" or payloads is None:
            return None
        data = await payloads.get(record.tenant_id, record.execution_id, ref)
        room = inline_room(record, "continuation")
        return await payloads.put(record.tenant_id, record.execution_id, data, inline_limit=room)

    async def redrive_where(
        self,
        selection: Selection,
        *,
        actor: str,
        reason: str | None = None,
        dry_run: bool = False,
        per_second: float = 10.0,
        limit: int = 1000,
    ) -> BulkReport:
        """Re-drive every matching execution, at most ``per_second``, at most ``limit``.

        Finding them reads the whole table (an operator action, never a hot path).
        """
        report = BulkReport(dry_run=dry_run)
        for record in await self._select(selection, limit):
            report.matched.append(record.execution_id)
            if dry_run:
                continue
            started = time.monotonic()
            try:
                await self.redrive(
                    record.tenant_id,
                    record.execution_id,
                    actor=actor,
                    now_ms=int(time.time() * 1000),
                    expected_version=record.version,
                    reason=reason,
                    allow_failed=Status.FAILED in selection.statuses,
                )
                report.redriven.append(record.execution_id)
            except (Conflict, NotFound):
                report.skipped.append(record.execution_id)
            await asyncio.sleep(max(0.0, 1 / per_second - (time.monotonic() - started)))
        return report

    async def cancel(
        self,
        tenant_id: str,
        execution_id: str,
        *,
        actor: str,
        now_ms: int,
        reason: str | None,
        expected_version: int | None = None,
    ) -> Acted:
        record = await self._current(tenant_id, execution_id, expected_version)
        if record.terminal:
            raise Conflict(
                f"execution {execution_id} already ended {record.status.value}",
                code="ALREADY_TERMINAL",
            )
        why = _reason(reason) or "cancelled by an operator"
        cancelled = await self._guarded(
            self.store.cancel(record, now_ms=now_ms, actor=actor, reason=why)
        )
        await self.dead_letters.publish(
            cancelled, reason="cancelled", transition_key=record.transition_key
        )
        if record.status is Status.WAITING_EXTERNAL and self.abandon_await is not None:
            await self.abandon_await(record, cancelled)
        return Acted(record.status, cancelled)

    async def _current(
        self, tenant_id: str, execution_id: str, expected_version: int | None
    ) -> ExecutionRecord:
        record = await self.store.get(tenant_id, execution_id)
        if record is None:
            raise NotFound(f"no execution {execution_id} for tenant {tenant_id}")
        if expected_version is not None and record.version != expected_version:
            raise Conflict(
                f"execution {execution_id} is at version {record.version}, "
                f"not the expected {expected_version}",
                code="VERSION_CONFLICT",
            )
        return record

    @staticmethod
    async def _guarded(write: Awaitable[ExecutionRecord]) -> ExecutionRecord:
        try:
            return await write
        except StaleRecord as exc:
            raise Conflict(
                "the execution changed while the action was applied; read it and retry",
                code="VERSION_CONFLICT",
            ) from exc

    async def _select(self, selection: Selection, limit: int) -> list[ExecutionRecord]:
        found: list[ExecutionRecord] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await self.store.page(
                statuses=selection.statuses,
                pipeline_id=selection.pipeline_id,
                limit=200,
                cursor=cursor,
            )
            found.extend(r for r in page.records if selection.matches(r))
            cursor = page.cursor
            if cursor is None:
                break
        return sorted(found, key=lambda r: r.updated_at_ms)[:limit]


def _reason(reason: str | None) -> str | None:
    return cap_message(reason, MAX_REASON) if reason else None
