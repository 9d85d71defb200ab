"""Releases and workers: per pipeline, the release a tenant's submissions pin, the activation
log, and the workers with their health, each drainable.

The registry lists no pipelines by itself, so the page shows those of the tenant's newest
executions, and any other by ``?pipelineId=``. Draining changes a worker every tenant shares:
only an unscoped admin token may, as on the API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coordinator.console.pages import (
    CONSOLE,
    ConsoleError,
    TenantSession,
    form_of,
    render,
    see_other,
    tenant_router,
)
from coordinator.store.search import ExecutionQuery
from coordinator.wiring import Coordinator
from tpf.clock import now_ms
from tpf.records import MAX_PIPELINE, check_identifier

SAMPLED_EXECUTIONS = 200
"""The newest executions whose pipelines the page lists (one Query page)."""
ACTIVATIONS_SHOWN = 20


def releases_router(coordinator: Coordinator) -> APIRouter:
    router = tenant_router()

    @router.get("/releases")
    async def releases(tenant_id: str, request: Request, session: TenantSession) -> Response:
        asked = request.query_params.get("pipelineId") or None
        if asked is not None:
            check_identifier(asked, what="pipelineId", pointer="/pipelineId", limit=MAX_PIPELINE)
        page = await coordinator.service.search(ExecutionQuery(tenant_id, limit=SAMPLED_EXECUTIONS))
        pipelines = sorted({r.pipeline_id for r in page.records} | ({asked} if asked else set()))
        shown = [await _pipeline(coordinator, tenant_id, p) for p in pipelines]
        return render(
            request,
            "releases.html",
            tenant=tenant_id,
            pipelines=shown,
            may_drain=session.grant.admin and not session.grant.scoped,
            pipeline_id=asked or "",
        )

    @router.post("/pipelines/{pipeline_id}/workers/{worker_id}/drain")
    async def drain(
        tenant_id: str, pipeline_id: str, worker_id: str, request: Request, session: TenantSession
    ) -> Response:
        await form_of(request, session)
        if not session.grant.admin or session.grant.scoped:
            raise ConsoleError(403, "draining a worker every tenant shares needs the admin token")
        await coordinator.workers.drain(pipeline_id[:MAX_PIPELINE], worker_id[:200], now_ms())
        return see_other(f"{CONSOLE}/tenants/{tenant_id}/releases?pipelineId={quote(pipeline_id)}")

    return router


async def _pipeline(coordinator: Coordinator, tenant_id: str, pipeline_id: str) -> dict[str, Any]:
    registry = coordinator.registry
    own = await registry.activations(pipeline_id, limit=ACTIVATIONS_SHOWN, tenant_id=tenant_id)
    default = await registry.activations(pipeline_id, limit=ACTIVATIONS_SHOWN)
    log = sorted(
        {(a.activated_at_epoch_ms, a.tenant_id, a.release_version) for a in [*own, *default]},
        reverse=True,
    )[:ACTIVATIONS_SHOWN]
    return {
        "pipeline_id": pipeline_id,
        "active": await registry.active_release(pipeline_id, tenant_id),
        "activations": log,
        "workers": await coordinator.workers.list(pipeline_id, now_ms()),
    }
