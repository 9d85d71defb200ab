"""The control-plane HTTP API, wire-compatible with TPF's self-hosted coordinator (REFERENCE 5).

Errors are JSON ``{errorCode, message, pointer?}``: 400 names the JSON pointer of the field at
fault, 401 a missing or wrong bearer token (compared in constant time), 404 and 409 the state
conflict. Health and metrics need no token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel, ConfigDict, ValidationError

from coordinator.access import TokenScopes
from coordinator.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from coordinator.quota import TenantQuota, retry_after
from coordinator.search_params import search_request
from coordinator.service import ExecutionService, NoActiveRelease, NoHealthyWorker
from coordinator.store.search import UnsupportedSearch
from tpf import metrics
from tpf.clock import now_ms
from tpf.codec import decode_envelope, encode_envelope
from tpf.errors import Conflict, IdempotencyKeyReused, InvalidInput, NotFound, TpfError
from tpf.records import ExecutionRecord
from tpf.untrusted import parse_json

CONTROL_PLANE = "/tpf/control-plane"
Body = TypeVar("Body", bound=BaseModel)


class ApiError(TpfError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        pointer: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.pointer = status, code, pointer
        self.headers = headers


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pipelineId: str
    inputShape: Literal["UNI"] = "UNI"
    inputPayload: dict[str, Any]
    idempotencyKey: str | None = None
    outputStreaming: Literal[False] = False


def bearer(
    token_of: Literal["control_plane_token", "admin_token"], *, spans_tenants: bool = False
) -> Any:
    """A dependency that admits requests carrying the named token, or a token scoped to the
    route's tenant (``coordinator.access``): 401 for a missing or wrong token, 403 for a scoped
    token on another tenant's route. ``spans_tenants``: what the route changes serves every
    tenant (a release, a worker), whatever tenant its path names, so no scoped token may use
    it."""

    # async: a plain function would be run on a worker thread for every request, and the
    # hand-off costs more CPU than the check itself.
    async def check(request: Request) -> None:
        scopes: TokenScopes = request.app.state.token_scopes
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        grant = scopes.grant(presented) if scheme.lower() == "bearer" else None
        allowed = grant is not None and (
            grant.admin if token_of == "admin_token" else grant.control
        )
        if grant is None or not allowed:
            raise ApiError(401, "UNAUTHORIZED", "missing or wrong bearer token")
        tenant_id = request.path_params.get("tenant_id")
        if grant.scoped and (spans_tenants or tenant_id is None or not grant.admits(tenant_id)):
            raise ApiError(403, "FORBIDDEN", "this token is scoped to other tenants")

    return Depends(check)


def status_body(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "executionId": record.execution_id,
        "tenantId": record.tenant_id,
        "pipelineId": record.pipeline_id,
        "releaseVersion": record.release_version,
        "status": record.status.value,
        "stepIndex": record.step_index,
        "attempt": record.attempt,
        "version": record.version,
        "nextDueAtEpochMs": record.due_at_ms,
        "createdAtEpochMs": record.created_at_ms,
        "updatedAtEpochMs": record.updated_at_ms,
        "errorCode": record.error_code,
        "errorMessage": record.error_message,
    }


async def _json_body(request: Request) -> Any:
    try:
        return parse_json(await request.body() or b"null")
    except InvalidInput as exc:
        raise ApiError(400, "INVALID_JSON", f"body is {exc}", exc.pointer) from exc


async def parse_body(request: Request, model: type[Body], *, empty: Any = None) -> Body:
    """The request's JSON body as ``model``; 400 with the pointer of the first bad field."""
    body = await _json_body(request)
    try:
        return model.model_validate(empty if body is None else body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ApiError(400, "INVALID_INPUT", first["msg"], _pointer(first["loc"])) from exc


def _pointer(loc: tuple[Any, ...]) -> str:
    return "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in loc)


def control_plane(service: ExecutionService, quota: TenantQuota) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PLANE, dependencies=[bearer("control_plane_token")])

    @router.post("/tenants/{tenant_id}/executions")
    async def submit(tenant_id: str, request: Request) -> dict[str, Any]:
        wait_s = quota.take(tenant_id)
        if wait_s:
            metrics.SUBMISSIONS_THROTTLED.inc()
            raise ApiError(
                429,
                "TENANT_QUOTA",
                f"tenant {tenant_id!r} submits faster than {quota.rate:g}/s",
                "",
                headers={"Retry-After": retry_after(wait_s)},
            )
        submit = await parse_body(request, SubmitRequest)
        value = decode_envelope(submit.inputPayload, pointer="/inputPayload")
        try:
            outcome = await service.submit(
                tenant_id=tenant_id,
                pipeline_id=submit.pipelineId,
                value=value,
                idempotency_key=submit.idempotencyKey,
                now_ms=now_ms(),
            )
        except InvalidInput as exc:
            if exc.pointer.startswith("/pipelineId") or exc.pointer.startswith("/idempotencyKey"):
                raise
            raise InvalidInput(str(exc), pointer="/inputPayload/payload" + exc.pointer) from exc
        record = outcome.record
        metrics.SUBMISSIONS.labels(duplicate=str(outcome.duplicate).lower()).inc()
        return {
            "executionId": record.execution_id,
            "duplicate": outcome.duplicate,
            "statusUrl": f"{CONTROL_PLANE}/tenants/{tenant_id}/executions/{record.execution_id}",
            "submittedAtEpochMs": record.created_at_ms,
        }

    @router.get("/tenants/{tenant_id}/executions")
    async def search(tenant_id: str, request: Request) -> dict[str, Any]:
        """A tenant's executions, newest first by creation time (ours; TPF has no such route).

        Query parameters: ``status`` (repeatable, or comma-separated), ``pipelineId``,
        ``errorCode``, ``since`` / ``until`` (created at or after / before; epoch milliseconds
        or ISO-8601, UTC unless the time says otherwise), ``limit`` (1..200, default 50; clamped,
        never refused) and ``cursor`` (``nextCursor`` of the previous page, with the same
        filters). Answered by DynamoDB Queries on the search index, never a Scan
        (``coordinator.store.search``; ``docs/search.md``). Supported filter combinations:

        - none: every execution (both of the tenant's lanes, 2 Queries a page);
        - ``status``: the lanes holding those statuses (FAILED and DLQ share one, the rest the
          other), the exact status checked on the records;
        - ``errorCode``: with ``status`` FAILED and/or DLQ, or none (then both);
        - ``pipelineId``, ``since``, ``until``: with any of the above.

        Any other combination (``errorCode`` with another status, an unknown parameter) is 400
        ``UNSUPPORTED_SEARCH`` listing these. A page holds at most ``limit`` executions, fewer
        when the checks on the records drop some; ``nextCursor`` is null at the end.
        """
        query, cursor = search_request(tenant_id, request.query_params.multi_items())
        page = await service.search(query, cursor)
        return {
            "executions": [status_body(r) for r in page.records],
            "nextCursor": page.cursor,
            "limit": query.limit,
        }

    @router.get("/tenants/{tenant_id}/executions/{execution_id}")
    async def status(tenant_id: str, execution_id: str) -> dict[str, Any]:
        return status_body(await service.status(tenant_id, execution_id))

    @router.get("/tenants/{tenant_id}/executions/{execution_id}/history")
    async def history(tenant_id: str, execution_id: str) -> list[dict[str, Any]]:
        """State changes in order, with operator actions' actor and reason (ours)."""
        return [c.as_json() for c in await service.history(tenant_id, execution_id)]

    @router.get("/tenants/{tenant_id}/executions/{execution_id}/result")
    async def result(tenant_id: str, execution_id: str) -> dict[str, Any]:
        """TPF's result: the status object as ``GET`` of the execution gives it, and the
        result's envelope once it SUCCEEDED (``null`` before)."""
        outcome = await service.result(tenant_id, execution_id)
        payload = None
        if outcome.result_type_id is not None:
            payload = encode_envelope(outcome.result_type_id, outcome.result)
        return {"status": status_body(outcome.record), "resultPayload": payload}

    return router


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's OpenTelemetry hooks, off: our metrics are Prometheus', and looking for a provider
on every request costs CPU that no span repays."""


def create_app(
    service: ExecutionService,
    *,
    control_plane_token: str,
    admin_token: str,
    routers: list[APIRouter] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    quota: TenantQuota | None = None,
    tenant_tokens: Mapping[str, Iterable[str]] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="tpf coordinator",
        docs_url=None,
        redoc_url=None,
        openapi_url="/q/openapi",
        telemetry=NO_TELEMETRY,
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.control_plane_token = control_plane_token
    app.state.admin_token = admin_token
    app.state.token_scopes = TokenScopes(
        control_plane_token=control_plane_token,
        admin_token=admin_token,
        tenant_tokens=tenant_tokens,
    )
    app.state.ready = False
    app.include_router(control_plane(service, quota or TenantQuota(rate=0, burst=1)))
    for router in routers or []:
        app.include_router(router)

    @app.get("/q/health/live")
    async def live() -> dict[str, str]:
        return {"status": "UP"}

    @app.get("/q/health/ready")
    async def ready(request: Request) -> JSONResponse:
        health = getattr(request.app.state, "loop_health", None)
        up = bool(request.app.state.ready) and (health is None or health.ready)
        return JSONResponse({"status": "UP" if up else "DOWN"}, status_code=200 if up else 503)

    @app.get("/q/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    def body(code: str, message: str, pointer: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"errorCode": code, "message": message}
        if pointer is not None:
            data["pointer"] = pointer
        return data

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            body(exc.code, str(exc), exc.pointer), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(UnsupportedSearch)
    async def unsupported(_: Request, exc: UnsupportedSearch) -> JSONResponse:
        return JSONResponse(body("UNSUPPORTED_SEARCH", str(exc), exc.pointer), status_code=400)

    @app.exception_handler(InvalidInput)
    async def invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse(body("INVALID_INPUT", str(exc), exc.pointer), status_code=400)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(body("NOT_FOUND", str(exc)), status_code=404)

    @app.exception_handler(IdempotencyKeyReused)
    async def reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return JSONResponse(body("IDEMPOTENCY_KEY_REUSED", str(exc)), status_code=409)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(body(exc.code, str(exc)), status_code=409)

    @app.exception_handler(NoHealthyWorker)
    async def no_worker(_: Request, exc: NoHealthyWorker) -> JSONResponse:
        # Retry-After: a worker that is starting reports itself within seconds.
        return JSONResponse(
            body("NO_HEALTHY_WORKER", str(exc)), status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(NoActiveRelease)
    async def no_release(_: Request, exc: NoActiveRelease) -> JSONResponse:
        return JSONResponse(body("NO_ACTIVE_RELEASE", str(exc)), status_code=409)
