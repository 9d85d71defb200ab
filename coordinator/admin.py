"""The admin HTTP API: re-drive and cancel (REFERENCE section 5), behind the admin token.

Bodies are camelCase like TPF's. ``actor`` is ours and optional: who asked, kept in the history
(the CLI sends ``user@host``); without it the entry says ``admin-api``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from coordinator.api import bearer, parse_body
from coordinator.operations import REDRIVABLE, Acted, OperatorActions, Selection
from tpf.clock import now_ms
from tpf.records import Status

ADMIN = "/tpf/admin"
DEFAULT_ACTOR = "admin-api"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: str | None = Field(default=None, max_length=1000)
    actor: str = Field(default=DEFAULT_ACTOR, min_length=1, max_length=64)


class RedriveRequest(_Body):
    expectedVersion: int | None = Field(default=None, ge=0)
    allowFailed: bool = False


class CancelRequest(_Body):
    pass


class BulkRedriveRequest(_Body):
    pipelineId: str | None = None
    status: list[Status] = Field(default=[Status.DLQ], min_length=1)
    errorCode: str | None = None
    updatedAfterEpochMs: int | None = Field(default=None, ge=0)
    updatedBeforeEpochMs: int | None = Field(default=None, ge=0)
    dryRun: bool = False
    perSecond: float = Field(default=10.0, gt=0, le=1000)
    limit: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("status")
    @classmethod
    def _redrivable(cls, statuses: list[Status]) -> list[Status]:
        if not set(statuses) <= REDRIVABLE:
            raise ValueError("only DLQ and FAILED executions can be re-driven")
        return statuses


def acted_body(acted: Acted) -> dict[str, Any]:
    record = acted.record
    return {
        "tenantId": record.tenant_id,
        "executionId": record.execution_id,
        "previousStatus": acted.previous.value,
        "status": record.status.value,
        "version": record.version,
        "currentStepIndex": record.step_index,
        "attempt": record.attempt,
        "pipelineId": record.pipeline_id,
        "contractVersion": record.contract_version,
        "releaseVersion": record.release_version,
        "updatedAtEpochMs": record.updated_at_ms,
        "errorCode": record.error_code,
        "errorMessage": record.error_message,
    }


def admin_router(actions: OperatorActions) -> APIRouter:
    router = APIRouter(prefix=ADMIN, dependencies=[bearer("admin_token")])

    @router.post("/tenants/{tenant_id}/executions/{execution_id}/redrive")
    async def redrive(tenant_id: str, execution_id: str, request: Request) -> dict[str, Any]:
        body = await parse_body(request, RedriveRequest, empty={})
        acted = await actions.redrive(
            tenant_id,
            execution_id,
            actor=body.actor,
            now_ms=now_ms(),
            expected_version=body.expectedVersion,
            reason=body.reason,
            allow_failed=body.allowFailed,
        )
        return acted_body(acted)

    @router.post("/tenants/{tenant_id}/executions/{execution_id}/cancel")
    async def cancel(tenant_id: str, execution_id: str, request: Request) -> dict[str, Any]:
        body = await parse_body(request, CancelRequest, empty={})
        acted = await actions.cancel(
            tenant_id, execution_id, actor=body.actor, now_ms=now_ms(), reason=body.reason
        )
        return acted_body(acted)

    @router.post("/tenants/{tenant_id}/executions/redrive")
    async def redrive_where(tenant_id: str, request: Request) -> dict[str, Any]:
        """Bulk re-drive (ours): every execution matching the filter, rate limited."""
        body = await parse_body(request, BulkRedriveRequest, empty={})
        report = await actions.redrive_where(
            Selection(
                tenant_id=tenant_id,
                statuses=frozenset(body.status),
                pipeline_id=body.pipelineId,
                error_code=body.errorCode,
                updated_after_ms=body.updatedAfterEpochMs,
                updated_before_ms=body.updatedBeforeEpochMs,
            ),
            actor=body.actor,
            reason=body.reason,
            dry_run=body.dryRun,
            per_second=body.perSecond,
            limit=body.limit,
        )
        return {
            "dryRun": report.dry_run,
            "matched": len(report.matched),
            "redriven": len(report.redriven),
            "skipped": len(report.skipped),
            "executionIds": report.redriven if not report.dry_run else report.matched,
            "skippedExecutionIds": report.skipped,
        }

    return router
