"""The Executions pages: the search with its filters in the URL, one execution with its
timeline, payloads, await unit and interactions, and the re-drive and cancel actions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coordinator.console.pages import (
    CONSOLE,
    ConsoleError,
    TenantSession,
    form_of,
    may_act,
    render,
    see_other,
    tenant_router,
)
from coordinator.operations import REDRIVABLE
from coordinator.search_params import search_request
from coordinator.wiring import Coordinator
from tpf.clock import now_ms
from tpf.errors import NotFound
from tpf.records import ExecutionRecord, Status

PREVIEW_CHARS = 4096
"""A payload is shown up to this size; the whole of it is a download."""
SHOWN_INTERACTIONS = 50
PAYLOADS = ("input", "continuation", "result")
NOTICES = {"redriven": "Re-driven: the execution is queued again.", "cancelled": "Cancelled."}


def executions_router(coordinator: Coordinator) -> APIRouter:
    router = tenant_router()

    @router.get("/executions")
    async def executions(tenant_id: str, request: Request) -> Response:
        # An empty field of the filter form means "any": left out, as the API would have it.
        params = [(k, v) for k, v in request.query_params.multi_items() if v != ""]
        query, cursor = search_request(tenant_id, params)
        page = await coordinator.service.search(query, cursor)
        next_link = None
        if page.cursor is not None:
            kept = [(k, v) for k, v in params if k != "cursor"]
            next_link = "?" + urlencode([*kept, ("cursor", page.cursor)])
        return render(
            request,
            "executions.html",
            tenant=tenant_id,
            records=page.records,
            next_link=next_link,
            statuses=[s.value for s in Status],
            chosen={s.value for s in query.statuses},
            filters=dict(params),
        )

    @router.get("/executions/{execution_id}")
    async def execution(tenant_id: str, execution_id: str, request: Request) -> Response:
        record = await coordinator.service.status(tenant_id, execution_id)
        history = await coordinator.service.history(tenant_id, execution_id)
        unit, interactions = None, []
        if record.await_unit_id is not None:
            unit = await coordinator.awaits.table.get_unit(tenant_id, record.await_unit_id)
            if unit is not None:
                interactions = await coordinator.awaits.table.interactions(
                    tenant_id, unit.unit_id, stop=SHOWN_INTERACTIONS
                )
        notice = NOTICES.get(request.query_params.get("done", ""))
        return render(
            request,
            "execution.html",
            tenant=tenant_id,
            record=record,
            history=history,
            payloads=await _previews(coordinator, record),
            unit=unit,
            interactions=interactions,
            redrivable=record.status in REDRIVABLE,
            notice=notice,
        )

    @router.get("/executions/{execution_id}/payloads/{which}")
    async def payload(tenant_id: str, execution_id: str, which: str, request: Request) -> Response:
        record = await coordinator.service.status(tenant_id, execution_id)
        ref = getattr(record, which) if which in PAYLOADS else None
        if ref is None:
            raise NotFound(f"execution {execution_id} has no {which[:20]} payload")
        data = await coordinator.payloads.get(tenant_id, execution_id, ref)
        # An attachment of an opaque type: the browser saves it and never renders it here.
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{execution_id}-{which}.json"',
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @router.post("/executions/{execution_id}/redrive")
    async def redrive(
        tenant_id: str, execution_id: str, request: Request, session: TenantSession
    ) -> Response:
        fields = await form_of(request, session)
        may_act(session)
        await coordinator.operations.redrive(
            tenant_id,
            execution_id,
            actor=session.actor,
            now_ms=now_ms(),
            expected_version=_version(fields),
            reason=fields.get("reason") or None,
            allow_failed=fields.get("allowFailed") == "on",
        )
        return see_other(f"{CONSOLE}/tenants/{tenant_id}/executions/{execution_id}?done=redriven")

    @router.post("/executions/{execution_id}/cancel")
    async def cancel(
        tenant_id: str, execution_id: str, request: Request, session: TenantSession
    ) -> Response:
        fields = await form_of(request, session)
        may_act(session)
        reason = fields.get("reason", "").strip()
        if not reason:
            raise ConsoleError(400, "say why the execution is cancelled")
        if fields.get("confirm") != "on":
            raise ConsoleError(400, "tick the box to confirm the cancellation")
        await coordinator.operations.cancel(
            tenant_id,
            execution_id,
            actor=session.actor,
            now_ms=now_ms(),
            reason=reason,
            expected_version=_version(fields),
        )
        return see_other(f"{CONSOLE}/tenants/{tenant_id}/executions/{execution_id}?done=cancelled")

    return router


def _version(fields: dict[str, str]) -> int:
    """The version the person saw: the action applies only if the execution is still there."""
    text = fields.get("expectedVersion", "")
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ConsoleError(400, "the form lacks the execution's expected version; reload it")
    return int(text)


async def _previews(coordinator: Coordinator, record: ExecutionRecord) -> list[dict[str, Any]]:
    previews = []
    for which in PAYLOADS:
        ref = getattr(record, which)
        if ref is None:
            continue
        data = await coordinator.payloads.get(record.tenant_id, record.execution_id, ref)
        text = data[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
        previews.append(
            {
                "name": which,
                "size": len(data),
                "text": text[:PREVIEW_CHARS],
                "cut": len(data) > PREVIEW_CHARS,
            }
        )
    return previews
