"""The coordinator process: HTTP API, results consumer and sweeper over one set of clients.

Every replica runs the same three loops; they share work through SQS and conditional writes
only, so replicas can be added or killed at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import APIRouter
from pydantic import SecretStr

from coordinator.admin import admin_router
from coordinator.api import create_app
from coordinator.awaits import DynamoAwaitTable
from coordinator.console import install_console
from coordinator.console.session_tables import DynamoSessionTable
from coordinator.depth import QueueDepthSampler
from coordinator.history import DynamoHistoryTable, History
from coordinator.interactions import interactions_router
from coordinator.quota import TenantQuota
from coordinator.releases_api import releases_router, retirement_router
from coordinator.retirement import ReleaseRetirement
from coordinator.routing import SqsWorkQueues
from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from coordinator.tls import loaded, tls_pair
from coordinator.wiring import Coordinator, assemble
from coordinator.workers import WorkerDirectory
from coordinator.workers.dynamodb import DynamoWorkerTable
from coordinator.workers.lambda_mappings import LambdaEventSourceMappings
from coordinator.workers_api import workers_router
from infra.resources import describe
from tpf.artifacts import artifact_readers
from tpf.artifacts.port import ArtifactReader
from tpf.errors import ConfigurationError
from tpf.loops import LoopHealth, supervised
from tpf.payloads.dynamodb_s3 import payload_store
from tpf.queues import Queue, SqsQueue
from tpf.registry import Registry, ReleaseRecord
from tpf.registry.dynamodb import DynamoRegistryTable
from tpf.secret_references import resolve_token
from tpf.settings import Settings
from tpf.signing import Signer, signer_for
from tpf.substrate import AwsClients, open_clients, resolve_endpoints

log = logging.getLogger("tpf.coordinator")
DEPTH_INTERVAL_S = 15.0
"""One GetQueueAttributes per sampled queue per interval."""


MIN_TOKEN_CHARS = 16
"""Shorter bearer tokens are refused: guessable, and an empty one would admit an empty header."""


def tokens(settings: Settings) -> tuple[str, str]:
    """The API's two bearer tokens; a replica refuses to start without good ones (fail closed)."""
    control = resolve_token(settings.control_plane_token, settings)
    admin = resolve_token(settings.admin_token, settings)
    if control is None or admin is None:
        raise ConfigurationError(
            "set TPF_CONTROL_PLANE_TOKEN and TPF_ADMIN_TOKEN (bearer tokens of the HTTP API, "
            "or secretsmanager: references to them)"
        )
    for name, value in (("TPF_CONTROL_PLANE_TOKEN", control), ("TPF_ADMIN_TOKEN", admin)):
        if len(value.strip()) < MIN_TOKEN_CHARS:
            raise ConfigurationError(
                f"{name} must be at least {MIN_TOKEN_CHARS} characters (make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    if hmac.compare_digest(control.encode(), admin.encode()):
        log.warning(
            "TPF_CONTROL_PLANE_TOKEN and TPF_ADMIN_TOKEN are the same: any client may administer",
            extra={"action": "config-warning"},
        )
    return control, admin


async def build(settings: Settings, aws: AwsClients, signer: Signer) -> Coordinator:
    """A replica over DynamoDB, SQS and S3."""

    async def queue(name: str) -> SqsQueue:
        return await SqsQueue.open(aws.sqs, settings.resource(name))

    table = DynamoExecutionTable(
        aws.dynamodb, settings.resource("executions"), shards=settings.due_shards
    )
    history = History(
        DynamoHistoryTable(aws.dynamodb, settings.resource("history")), enabled=settings.history
    )
    return assemble(
        settings=settings,
        store=ExecutionStore(table, history),
        registry=Registry(DynamoRegistryTable(aws.dynamodb, settings.resource("registry"))),
        payloads=payload_store(settings, aws),
        work=SqsWorkQueues(aws.sqs, settings, resolve_endpoints(settings)),
        results=await queue("results"),
        dead_letters=await queue("dead-letters"),
        awaits=DynamoAwaitTable(
            aws.dynamodb, settings.resource("awaits"), shards=settings.due_shards
        ),
        await_requests=await queue("await-requests"),
        await_completions=await queue("await-completions"),
        ingest=await queue("ingest"),
        signer=signer,
        workers=WorkerDirectory(
            DynamoWorkerTable(aws.dynamodb, settings.resource("registry")),
            stale_after=settings.timings.worker_stale,
            mappings=LambdaEventSourceMappings(aws.lambda_) if aws.lambda_ else None,
        ),
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running_coordinator(
    settings: Settings,
) -> AsyncIterator[tuple[Coordinator, AwsClients]]:
    """Clients opened and parts wired, loops not started (tests drive them directly)."""
    signer = signer_for(settings)
    async with open_clients(settings) as aws:
        coordinator = await build(settings, aws, signer)
        try:
            yield coordinator, aws
        finally:
            await coordinator.close()


async def sampled_queues(coordinator: Coordinator) -> dict[str, Queue]:
    """The queues whose depth the coordinator reports. (A release's work queue depth is on
    its workers' side of the dashboard: SQS reports it per queue.)"""
    return {
        "results": coordinator.results.queue,
        "ingest": coordinator.ingest.queue,
        "await-completions": coordinator.completions.queue,
    }


async def dead_letter_queues(settings: Settings, aws: AwsClients) -> dict[str, Queue]:
    """The stack's dead-letter queues (``<queue>-dlq``), sampled with the others so the console
    and ``/q/metrics`` show what waits in them. (A release's work queue has one too; its depth
    is on the workers' side of the dashboard, as the work queue's is.)"""
    names = [q.dead_letter_name for q in describe(settings).queues]
    return {name: await SqsQueue.open(aws.sqs, settings.resource(name)) for name in names}


def scoped_tokens(settings: Settings) -> dict[str, frozenset[str]]:
    """``TPF_TENANT_TOKENS``, each token itself or a ``secretsmanager:`` reference to it (as
    the API's two tokens), refused at start when one is too short to be a secret."""
    scoped: dict[str, frozenset[str]] = {}
    for given, tenants in settings.tenant_tokens.items():
        token = resolve_token(SecretStr(given), settings) or ""
        if len(token.strip()) < MIN_TOKEN_CHARS:
            raise ConfigurationError(
                f"every token in TPF_TENANT_TOKENS must be at least {MIN_TOKEN_CHARS} characters"
            )
        scoped[token] = tenants
    return scoped


def admin_routers(coordinator: Coordinator, artifacts: ArtifactReader) -> list[APIRouter]:
    """Every route behind the admin token, and the interaction routes."""

    async def create_release_resources(release: ReleaseRecord) -> None:
        await coordinator.dispatcher.work.create(release.pipeline_id, release.release_version)

    return [
        admin_router(coordinator.operations),
        interactions_router(coordinator.awaits),
        releases_router(coordinator.registry, artifacts, on_activate=create_release_resources),
        retirement_router(
            ReleaseRetirement(
                registry=coordinator.registry,
                store=coordinator.store,
                work=coordinator.dispatcher.work,
            )
        ),
        workers_router(coordinator.workers),
    ]


async def serve(settings: Settings, stop: asyncio.Event, **extra: Any) -> None:
    """Run one coordinator replica until ``stop`` is set, then drain and return."""
    control_token, admin_token = tokens(settings)
    tls = tls_pair(settings)
    async with running_coordinator(settings) as (coordinator, aws):
        app = create_app(
            coordinator.service,
            control_plane_token=control_token,
            admin_token=admin_token,
            routers=admin_routers(coordinator, artifact_readers(aws.s3)),
            max_body_bytes=settings.max_request_bytes,
            tenant_tokens=scoped_tokens(settings),
            quota=TenantQuota(rate=settings.tenant_submit_rate, burst=settings.tenant_submit_burst),
        )
        install_console(
            app,
            coordinator,
            sessions=DynamoSessionTable(aws.dynamodb, settings.resource("registry")),
            session_ttl_s=settings.console_session_ttl_s,
        )
        sampled = {**await sampled_queues(coordinator), **await dead_letter_queues(settings, aws)}
        depth = QueueDepthSampler(sampled, interval_s=DEPTH_INTERVAL_S)
        server = _Server(
            loaded(
                uvicorn.Config(
                    app,
                    host=settings.api_host,
                    port=settings.api_port,
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                ),
                tls,
            )
        )
        health = LoopHealth()
        app.state.loop_health = health
        parts: dict[str, Callable[[asyncio.Event], Awaitable[object]]] = {
            "results": coordinator.results.run,
            "sweeper": coordinator.sweeper.run,
            "await-sweeper": coordinator.awaits.run,
            "completions": coordinator.completions.run,
            "ingest": coordinator.ingest.run,
            "queue-depth": depth.run,
        }
        loops = [
            asyncio.create_task(server.serve(), name="api"),
            *(
                asyncio.create_task(
                    supervised(name, run, stop, health=health, role="coordinator"), name=name
                )
                for name, run in parts.items()
            ),
        ]
        app.state.ready = True
        log.info(
            "coordinator ready",
            extra={
                "action": "start",
                "api": f"{'https' if tls else 'http'}://{settings.api_host}:{settings.api_port}",
            },
        )
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
        app.state.ready = False
        stop.set()
        server.should_exit = True
        await asyncio.gather(*loops, return_exceptions=True)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
