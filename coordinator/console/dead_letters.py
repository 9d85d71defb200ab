"""Dead letters: a tenant's failed executions grouped by error code, and bulk re-drive with a
dry-run count first, through the same bulk re-drive as ``POST .../executions/redrive``; and the
messages waiting in each SQS dead-letter queue (``tpf dlq replay`` moves them back)."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coordinator.console.overview import queue_depths
from coordinator.console.pages import (
    ConsoleError,
    TenantSession,
    form_of,
    may_act,
    render,
    tenant_router,
)
from coordinator.operations import REDRIVABLE, Selection
from coordinator.store.search import ExecutionQuery
from coordinator.wiring import Coordinator
from tpf.records import MAX_ERROR_CODE, Status, check_identifier

COUNTED = 1000
"""Failures read to group them; past this the page says "1,000+" (each page is one Query)."""
BULK_LIMIT = 1000
BULK_RATE = 20.0
"""Re-drives per second: a bulk re-drive must not flood the work queue."""


def dead_letters_router(coordinator: Coordinator) -> APIRouter:
    router = tenant_router("/dead-letters")

    @router.get("")
    async def dead_letters(tenant_id: str, request: Request) -> Response:
        groups, more = await _groups(coordinator, tenant_id)
        return render(
            request,
            "dead_letters.html",
            tenant=tenant_id,
            groups=groups,
            more=more,
            report=None,
            queues=_dead_letter_queues(),
        )

    @router.post("/redrive")
    async def redrive(tenant_id: str, request: Request, session: TenantSession) -> Response:
        fields = await form_of(request, session)
        may_act(session)
        status = _status(fields.get("status", ""))
        error_code = fields.get("errorCode") or None
        if error_code is not None:
            check_identifier(
                error_code, what="errorCode", pointer="/errorCode", limit=MAX_ERROR_CODE
            )
        dry_run = fields.get("dryRun") != "0"
        report = await coordinator.operations.redrive_where(
            Selection(tenant_id=tenant_id, statuses=frozenset({status}), error_code=error_code),
            actor=session.actor,
            reason=f"bulk re-drive of {status.value} {error_code or '(no code)'} from the console",
            dry_run=dry_run,
            per_second=BULK_RATE,
            limit=BULK_LIMIT,
        )
        groups, more = await _groups(coordinator, tenant_id)
        return render(
            request,
            "dead_letters.html",
            tenant=tenant_id,
            groups=groups,
            more=more,
            report=report,
            asked={"status": status.value, "errorCode": error_code or ""},
            queues=_dead_letter_queues(),
        )

    return router


def _dead_letter_queues() -> list[tuple[str, int]]:
    """Messages waiting in each dead-letter queue, as last sampled (every tenant's)."""
    return [(q, n) for q, state, n in queue_depths() if q.endswith("-dlq") and state == "visible"]


def _status(text: str) -> Status:
    try:
        status = Status(text)
    except ValueError:
        status = None
    if status not in REDRIVABLE:
        raise ConsoleError(400, "only DLQ and FAILED executions can be re-driven")
    assert status is not None
    return status


async def _groups(
    coordinator: Coordinator, tenant_id: str
) -> tuple[list[tuple[str, str, int]], bool]:
    """(status, error code, count) by count, and whether more failures exist than were read."""
    counts: Counter[tuple[str, str]] = Counter()
    query = ExecutionQuery(tenant_id, frozenset(REDRIVABLE), limit=200)
    cursor, read = None, 0
    while read < COUNTED:
        page = await coordinator.service.search(query, cursor)
        for record in page.records:
            counts[(record.status.value, record.error_code or "")] += 1
        read += len(page.records)
        cursor = page.cursor
        if cursor is None:
            break
    groups = [(status, code, n) for (status, code), n in counts.most_common()]
    return groups, cursor is not None
