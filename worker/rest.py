"""The REST worker transport: TPF's synchronous worker endpoint, beside the SQS poller.

Two routes, both refused with 401 unless the request is signed (:mod:`tpf.signing`, REST)::

    POST /pipeline/worker/transitions/execute    a signed TransitionCommand → its signed result
    GET  /pipeline/worker/capabilities           what this worker hosts, signed

A command runs the way the poller runs one (:class:`worker.command.CommandHandler`), but the
answer is the HTTP response instead of a message on the results queue::

    request signature ─ decode ─ envelope signature ─ hosted? in time? ─ run ─ signed result

===========================================  ======  ==================================
what happened                                status  errorCode
===========================================  ======  ==================================
result                                       200     (the signed TransitionResult)
request or envelope signature rejected       401     SIGNATURE_REJECTED
body not a command envelope                  400     MALFORMED_COMMAND
body over ``MAX_BODY_BYTES``                 413     TOO_LARGE
another pipeline, contract, release; late    409     COMMAND_REFUSED (with ``reason``)
the framework crashed running it             500     TRANSITION_CRASHED
===========================================  ======  ==================================

The result is signed on its own channel (``rest-results``), so the coordinator commits nothing
a worker did not sign, and a result signed for the results queue cannot pass as an answer here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tpf import metrics
from tpf.contract import Contract
from tpf.rest import (
    CAPABILITIES_CHANNEL,
    CAPABILITIES_PATH,
    COMMANDS_CHANNEL,
    EXECUTE_PATH,
    RESULTS_CHANNEL,
    WorkerCapabilities,
)
from tpf.signing import NONCE_HEADER, NonceCache, SignatureRejected, Signer
from tpf.wire import (
    MalformedMessage,
    TransitionCommand,
    decode,
)
from worker.command import ROLE, CommandHandler, command_fields, epoch_ms

ANSWER_TTL_MS = 120_000
"""An answer is read at once by the caller that is waiting for it; the REST window will do."""
MAX_BODY_BYTES = 1 << 20
"""A command fits an SQS message (256 KiB); large payloads travel by claim check."""


def describe(handler: CommandHandler, extra: Mapping[str, Any] | None = None) -> WorkerCapabilities:
    """The handler's identity and hosted pipelines, with ``extra`` fields (camelCase) on top."""
    derived: dict[str, Any] = {
        "workerId": handler.identity.worker_id,
        "releaseVersion": handler.identity.release_version,
        "pipelines": [
            {"pipelineId": pid, "contractVersion": Contract.from_pipeline(p).version}
            for pid, p in handler.pipelines.items()
        ],
    }
    return WorkerCapabilities.model_validate({**derived, **(extra or {})})


class _Rejected(Exception):
    """A request answered with an error, counted and logged as a rejection."""

    def __init__(self, status: int, code: str, label: str, detail: str, **body: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.body = status, code, body
        self.label = label
        """The ``tpf_messages_rejected`` reason label."""
        self.detail = detail


def worker_app(
    handler: CommandHandler,
    signer: Signer,
    nonces: NonceCache,
    capabilities: Mapping[str, Any] | None = None,
    *,
    clock: Callable[[], int] = epoch_ms,
    ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    """The REST worker over ``handler``. ``capabilities`` adds to what the handler describes;
    ``ready`` is false once the worker drains (``/q/health/ready`` then answers 503)."""
    app = FastAPI(
        title="tpf transition worker",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # As the coordinator's: no OpenTelemetry hooks to consult on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    advertised = describe(handler, capabilities)

    @app.get("/q/health/live")
    async def live() -> dict[str, str]:
        return {"status": "UP"}

    @app.get("/q/health/ready")
    async def readiness() -> JSONResponse:
        up = ready()
        return JSONResponse({"status": "UP" if up else "DOWN"}, status_code=200 if up else 503)

    async def verified_body(request: Request) -> bytes:
        body = await _read_body(request)
        try:
            signer.verify_request(
                request.method,
                request.url.path,
                request.headers,
                body,
                now_ms=clock(),
                nonces=nonces,
            )
        except SignatureRejected as exc:
            raise _Rejected(401, "SIGNATURE_REJECTED", "signature", str(exc)) from exc
        return body

    @app.exception_handler(_Rejected)
    async def rejected(request: Request, exc: _Rejected) -> JSONResponse:
        metrics.MESSAGES_REJECTED.labels(ROLE, "rest", exc.label).inc()
        extra: dict[str, Any] = {
            "action": "reject",
            "messageId": request.headers.get(NONCE_HEADER),
            "reason": exc.label,
            "transport": "rest",
        }
        command = getattr(request.state, "command", None)
        if isinstance(command, TransitionCommand):
            extra.update(command_fields(command))
        handler.log.warning("request rejected (%s): %s", exc.label, exc.detail, extra=extra)
        body = {"errorCode": exc.code, "message": exc.detail, **exc.body}
        return JSONResponse(body, status_code=exc.status)

    @app.post(EXECUTE_PATH)
    async def execute(request: Request) -> Response:
        body = await verified_body(request)
        try:
            command = decode(body)
            if not isinstance(command, TransitionCommand):
                raise MalformedMessage(f"a {command.kind} envelope where a command belongs")
        except MalformedMessage as exc:
            raise _Rejected(400, "MALFORMED_COMMAND", "malformed", str(exc)) from exc
        request.state.command = command
        try:
            signer.verify(command, channel=COMMANDS_CHANNEL, now_ms=clock())
        except SignatureRejected as exc:
            raise _Rejected(401, "SIGNATURE_REJECTED", "signature", str(exc)) from exc
        refusal = await handler.refusal(command)
        if refusal is not None:
            reason, _ = refusal  # no message to dispose of: the caller reads the reason
            raise _Rejected(
                409, "COMMAND_REFUSED", reason, f"command refused: {reason}", reason=reason
            )
        fields = command_fields(command)
        try:
            result = await handler.execute(command)
        except Exception:
            # A framework bug, not a step failure (those are FAILED results): the coordinator's
            # deadline sweeper retries the transition, as it would after a lost SQS result.
            handler.log.exception("transition crashed", extra={"action": "crash", **fields})
            return JSONResponse(
                {"errorCode": "TRANSITION_CRASHED", "message": "the transition crashed"},
                status_code=500,
            )
        signed = signer.sign(result, channel=RESULTS_CHANNEL, now_ms=clock(), ttl_ms=ANSWER_TTL_MS)
        handler.log.info("transition %s", result.outcome, extra={"action": "result-sent", **fields})
        return Response(signed.to_json(), media_type="application/json")

    @app.get(CAPABILITIES_PATH)
    async def capabilities_route(request: Request) -> Response:
        await verified_body(request)
        signed = signer.sign(
            advertised, channel=CAPABILITIES_CHANNEL, now_ms=clock(), ttl_ms=ANSWER_TTL_MS
        )
        return Response(signed.to_json(), media_type="application/json")

    return app


async def _read_body(request: Request) -> bytes:
    """The body, refused past MAX_BODY_BYTES before it is all held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Rejected(413, "TOO_LARGE", "too_large", f"body over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Rejected(413, "TOO_LARGE", "too_large", f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# -- serving -------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (the process owner decides when to stop), that
    says when it listens."""

    def __init__(self, config: uvicorn.Config, listening: asyncio.Event | None) -> None:
        super().__init__(config)
        self._listening = listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self._listening is not None and self.started:
            self._listening.set()


async def serve_rest(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    listening: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set; ``listening`` is set once the port accepts calls.
    In-flight requests finish before this returns (uvicorn's graceful shutdown)."""
    server = _Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", access_log=False
        ),
        listening,
    )
    serving = asyncio.create_task(server.serve(), name="rest-worker")
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopped.cancel()
        await serving
