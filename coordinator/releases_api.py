"""The release registry over HTTP (REFERENCE sections 4 and 5), behind the admin token.

::

    POST /tpf/admin/tenants/{t}/pipelines/{p}/releases/register        descriptor -> record
    GET  /tpf/admin/tenants/{t}/pipelines/{p}/releases                 records, oldest first
    GET  /tpf/admin/tenants/{t}/pipelines/{p}/releases/active          record; 404 when none
    GET  /tpf/admin/tenants/{t}/pipelines/{p}/releases/{v}             record; 404
    POST /tpf/admin/tenants/{t}/pipelines/{p}/releases/{v}/activate    record; 404
    GET  /tpf/admin/tenants/{t}/pipelines/{p}/activations              events, newest first (ours)

Releases belong to a pipeline, for every tenant; activations belong to the tenant in the path,
and those of tenant ``default`` serve every tenant without its own (``tpf.registry``). The
active release, the list's active mark and the activations are the path tenant's.

``register`` takes TPF's ``{releaseDescriptorPath}``, a descriptor file on the coordinator's
filesystem, or the descriptor itself as the body. A bad descriptor, a pipeline id
other than the path's, an unreadable artifact or a digest that does not match is 400 with the
JSON pointer of the field; the same version with other content is 409 ``RELEASE_EXISTS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import RootModel

from coordinator.api import bearer, parse_body
from coordinator.retirement import ReleaseRetirement
from tpf.artifacts.port import ArtifactReader
from tpf.clock import now_ms
from tpf.errors import AlreadyExists, Conflict, NotFound
from tpf.registry import Activation, Registry, ReleaseRecord
from tpf.releases import InvalidRelease, ReleaseDescriptor, read_descriptor

ADMIN = "/tpf/admin"
PIPELINE = "/tenants/{tenant_id}/pipelines/{pipeline_id}"

OnActivate = Callable[[ReleaseRecord], Awaitable[None]]


class _Object(RootModel[dict[str, Any]]):
    pass


def release_body(
    record: ReleaseRecord, tenant_id: str, *, active: bool | None = None
) -> dict[str, Any]:
    """Ours, with the fields of TPF's ``PipelineReleaseRecord`` a client reads: ``tenantId``,
    ``status`` (``ACTIVE`` or ``REGISTERED``), ``createdAtEpochMs``, ``updatedAtEpochMs``."""
    body = record.model_dump(mode="json", by_alias=True)
    if active is None:
        active = record.activated_at_epoch_ms is not None
    else:
        body["active"] = active
    return {
        **body,
        "tenantId": tenant_id,
        "status": "ACTIVE" if active else "REGISTERED",
        "createdAtEpochMs": record.registered_at_epoch_ms,
        "updatedAtEpochMs": record.activated_at_epoch_ms or record.registered_at_epoch_ms,
    }


def activation_body(activation: Activation) -> dict[str, Any]:
    return activation.model_dump(mode="json", by_alias=True)


def releases_router(
    registry: Registry,
    artifacts: ArtifactReader,
    on_activate: OnActivate | None = None,
) -> APIRouter:
    """The release routes over ``registry``.

    ``artifacts`` reads a primary artifact once, at registration, to check its digest; build it
    with :func:`tpf.releases.artifact_readers` (``artifact_readers(aws.s3)`` reads ``file://``
    from this process's filesystem and ``s3://`` through the aioboto3 client).
    ``on_activate`` runs with the release record *before* the activation event is written, so
    release-scoped resources (its queue, say) exist before any submission is pinned to it; if it
    raises, nothing is activated.
    """
    router = APIRouter(prefix=ADMIN, dependencies=[bearer("admin_token", spans_tenants=True)])

    @router.post(PIPELINE + "/releases/register")
    async def register(tenant_id: str, pipeline_id: str, request: Request) -> dict[str, Any]:
        body = (await parse_body(request, _Object)).root
        descriptor = await _descriptor(body)
        if descriptor.pipeline_id != pipeline_id:
            raise InvalidRelease(
                f"the descriptor is of pipeline {descriptor.pipeline_id!r}, "
                f"the path names {pipeline_id!r}",
                pointer="/pipelineId",
            )
        try:
            record = await registry.register_descriptor(descriptor, artifacts, now_ms=now_ms())
        except AlreadyExists as exc:
            raise Conflict(str(exc), code="RELEASE_EXISTS") from exc
        return release_body(record, tenant_id)

    @router.get(PIPELINE + "/releases")
    async def releases(tenant_id: str, pipeline_id: str) -> list[dict[str, Any]]:
        """Oldest registration first, and ``[]`` for a pipeline with none, as upstream lists."""
        records = await registry.releases(pipeline_id, tenant_id)
        return [
            release_body(r, tenant_id, active=r.activated_at_epoch_ms is not None)
            for r in reversed(records)
        ]

    @router.get(PIPELINE + "/releases/active")
    async def active(tenant_id: str, pipeline_id: str) -> dict[str, Any]:
        record = await registry.active_release(pipeline_id, tenant_id)
        if record is None:
            raise NotFound(f"pipeline {pipeline_id!r} has no active release")
        return release_body(record, tenant_id)

    @router.get(PIPELINE + "/releases/{release_version}")
    async def release(tenant_id: str, pipeline_id: str, release_version: str) -> dict[str, Any]:
        record = await registry.release(pipeline_id, release_version)
        active = await registry.active_release(pipeline_id, tenant_id)
        if active is not None and active.release_version == release_version:
            record = active
        return release_body(record, tenant_id)

    @router.post(PIPELINE + "/releases/{release_version}/activate")
    async def activate(tenant_id: str, pipeline_id: str, release_version: str) -> dict[str, Any]:
        record = await registry.release(pipeline_id, release_version)
        if on_activate is not None:
            await on_activate(record)
        activated = await registry.activate(
            pipeline_id, release_version, now_ms=now_ms(), tenant_id=tenant_id
        )
        return release_body(activated, tenant_id)

    @router.get(PIPELINE + "/activations")
    async def activations(tenant_id: str, pipeline_id: str) -> list[dict[str, Any]]:
        found = await registry.activations(pipeline_id, tenant_id=tenant_id)
        return [activation_body(a) for a in found]

    return router


async def _descriptor(body: dict[str, Any]) -> ReleaseDescriptor:
    """The descriptor a register request names (TPF's form) or carries."""
    if "releaseDescriptorPath" not in body or "pipelineId" in body:
        return ReleaseDescriptor.parse(body)
    path = body["releaseDescriptorPath"]
    if not isinstance(path, str) or not path:
        raise InvalidRelease(
            "releaseDescriptorPath must be a path on the coordinator's filesystem",
            pointer="/releaseDescriptorPath",
        )
    try:
        return await asyncio.to_thread(read_descriptor, Path(path))
    except InvalidRelease as exc:
        # A field inside the file keeps its pointer; a file that cannot be read points here.
        pointer = exc.pointer or "/releaseDescriptorPath"
        message = str(exc) if not exc.pointer else f"{path}: {exc}"
        raise InvalidRelease(message, pointer=pointer) from exc


def retirement_router(retirement: ReleaseRetirement) -> APIRouter:
    """``POST .../pipelines/{p}/releases/{v}/retire`` (ours): delete a release's work queue
    once it is not active and no execution pinned to it may run again (409 else)."""
    router = APIRouter(
        prefix="/tpf/admin", dependencies=[bearer("admin_token", spans_tenants=True)]
    )

    @router.post("/tenants/{tenant_id}/pipelines/{pipeline_id}/releases/{release_version}/retire")
    async def retire(tenant_id: str, pipeline_id: str, release_version: str) -> dict[str, Any]:
        await retirement.retire(pipeline_id, release_version)
        return {"pipelineId": pipeline_id, "releaseVersion": release_version, "retired": True}

    return router
