"""The admin API's worker routes (REFERENCE section 5), behind the admin token.

TPF-style workers register and heartbeat here; a Lambda deployment registers its function here
(``kind: "lambda"``, ours). Queue workers report themselves with presence messages instead.
Responses are worker records in camelCase with the derived ``state``. The tenant in the path is
accepted for TPF's route shape; workers belong to a pipeline, whichever tenant submits to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from coordinator.api import bearer, parse_body
from coordinator.workers import WorkerDirectory, WorkerRecord, WorkerRegistration
from tpf.clock import now_ms

ADMIN = "/tpf/admin"
WORKERS = "/tenants/{tenant_id}/pipelines/{pipeline_id}/workers"


def worker_body(record: WorkerRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True)


def workers_router(directory: WorkerDirectory) -> APIRouter:
    router = APIRouter(prefix=ADMIN, dependencies=[bearer("admin_token", spans_tenants=True)])

    @router.post(f"{WORKERS}/register")
    async def register(tenant_id: str, pipeline_id: str, request: Request) -> dict[str, Any]:
        registration = await parse_body(request, WorkerRegistration)
        return worker_body(await directory.register(pipeline_id, registration, now_ms()))

    @router.post(WORKERS + "/{worker_id}/heartbeat")
    async def heartbeat(tenant_id: str, pipeline_id: str, worker_id: str) -> dict[str, Any]:
        return worker_body(await directory.heartbeat(pipeline_id, worker_id, now_ms()))

    @router.post(WORKERS + "/{worker_id}/drain")
    async def drain(tenant_id: str, pipeline_id: str, worker_id: str) -> dict[str, Any]:
        return worker_body(await directory.drain(pipeline_id, worker_id, now_ms()))

    @router.get(WORKERS)
    async def workers(
        tenant_id: str,
        pipeline_id: str,
        contractVersion: str | None = None,
        releaseVersion: str | None = None,
    ) -> list[dict[str, Any]]:
        """The pipeline's workers; ``contractVersion`` and ``releaseVersion`` match exactly
        when given (blank: any), as upstream filters."""
        return [
            worker_body(r)
            for r in await directory.list(pipeline_id, now_ms())
            if (not contractVersion or r.contract_version == contractVersion)
            and (not releaseVersion or r.release_version == releaseVersion)
        ]

    return router
