"""The coordinator process: HTTP API, results consumer and sweeper over one set of clients.

Every replica runs the same three loops; they share work through SQS and conditional writes
only, so replicas can be added or killed at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from coordinator.api import create_app
from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.registry import DynamoRegistryTable, Registry
from coordinator.results import ResultsConsumer
from coordinator.service import ExecutionService
from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from coordinator.sweeper import Sweeper
from coordinator.transitions import TransitionCommitter
from tpf.errors import ConfigurationError
from tpf.payloads import PayloadStore
from tpf.payloads.aws import payload_store
from tpf.queues import SqsQueue
from tpf.settings import Settings
from tpf.signing import Signer
from tpf.substrate import AwsClients, open_clients

log = logging.getLogger("tpf.coordinator")


@dataclass
class Coordinator:
    """The wired parts of one coordinator replica."""

    settings: Settings
    store: ExecutionStore
    registry: Registry
    payloads: PayloadStore
    dispatcher: Dispatcher
    committer: TransitionCommitter
    results: ResultsConsumer
    sweeper: Sweeper
    service: ExecutionService
    app: FastAPI


def tokens(settings: Settings) -> tuple[str, str]:
    if settings.control_plane_token is None or settings.admin_token is None:
        raise ConfigurationError(
            "set TPF_CONTROL_PLANE_TOKEN and TPF_ADMIN_TOKEN (bearer tokens of the HTTP API)"
        )
    return (
        settings.control_plane_token.get_secret_value(),
        settings.admin_token.get_secret_value(),
    )


async def build(settings: Settings, aws: AwsClients, signer: Signer) -> Coordinator:
    timings = settings.timings
    store = ExecutionStore(
        DynamoExecutionTable(
            aws.dynamodb, settings.resource("executions"), shards=settings.due_shards
        )
    )
    registry = Registry(DynamoRegistryTable(aws.dynamodb, settings.resource("registry")))
    payloads = payload_store(settings, aws)
    work = await SqsQueue.open(aws.sqs, settings.resource("work"))
    results_queue = await SqsQueue.open(aws.sqs, settings.resource("results"))
    dead_letters = DeadLetterPublisher(
        await SqsQueue.open(aws.sqs, settings.resource("dead-letters"))
    )
    dispatcher = Dispatcher(
        store=store, registry=registry, work=work, signer=signer, timings=timings
    )
    committer = TransitionCommitter(
        store=store,
        registry=registry,
        payloads=payloads,
        dispatcher=dispatcher,
        dead_letters=dead_letters,
    )
    service = ExecutionService(
        store=store, registry=registry, payloads=payloads, dispatcher=dispatcher, timings=timings
    )
    control_token, admin_token = tokens(settings)
    return Coordinator(
        settings=settings,
        store=store,
        registry=registry,
        payloads=payloads,
        dispatcher=dispatcher,
        committer=committer,
        results=ResultsConsumer(
            queue=results_queue, committer=committer, store=store, signer=signer, timings=timings
        ),
        sweeper=Sweeper(
            store=store,
            dispatcher=dispatcher,
            committer=committer,
            shards=settings.due_shards,
            timings=timings,
        ),
        service=service,
        app=create_app(service, control_plane_token=control_token, admin_token=admin_token),
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running_coordinator(settings: Settings) -> AsyncIterator[Coordinator]:
    """Clients opened and parts wired, loops not started (tests drive them directly)."""
    signer = Signer.from_references(settings.signing_key, settings.signing_key_previous)
    async with open_clients(settings) as aws:
        yield await build(settings, aws, signer)


async def serve(settings: Settings, stop: asyncio.Event, **extra: Any) -> None:
    """Run one coordinator replica until ``stop`` is set, then drain and return."""
    async with running_coordinator(settings) as coordinator:
        server = _Server(
            uvicorn.Config(
                coordinator.app,
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        loops = [
            asyncio.create_task(server.serve(), name="api"),
            asyncio.create_task(coordinator.results.run(stop), name="results"),
            asyncio.create_task(coordinator.sweeper.run(stop), name="sweeper"),
        ]
        coordinator.app.state.ready = True
        log.info(
            "coordinator ready",
            extra={"action": "start", "api": f"http://{settings.api_host}:{settings.api_port}"},
        )
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
        coordinator.app.state.ready = False
        stop.set()
        server.should_exit = True
        await asyncio.gather(*loops, return_exceptions=True)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
