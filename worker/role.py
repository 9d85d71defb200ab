"""The worker process: one transition poller over the stack's work queue."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator

from tpf.errors import ConfigurationError
from tpf.payloads.aws import payload_store
from tpf.pipeline import Pipeline
from tpf.queues import SqsQueue
from tpf.settings import Settings
from tpf.signing import Signer
from tpf.substrate import open_clients
from tpf.wire import WorkerIdentity
from worker.poller import TransitionWorker

log = logging.getLogger("tpf.worker")


def load_pipeline(reference: str) -> Pipeline:
    """``package.module:attribute`` → the Pipeline object it names."""
    module_name, _, attribute = reference.partition(":")
    try:
        pipeline = getattr(importlib.import_module(module_name), attribute or "pipeline")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load pipeline {reference!r}: {exc}") from exc
    if not isinstance(pipeline, Pipeline):
        raise ConfigurationError(f"{reference!r} is a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def metrics_endpoint(settings: Settings) -> Iterator[None]:
    """Serve the process's metrics while the worker runs, when ``metrics_port`` is set."""
    if settings.metrics_port is None:
        yield
        return
    import prometheus_client

    server, thread = prometheus_client.start_http_server(
        settings.metrics_port, addr=settings.api_host
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def serve(
    settings: Settings, stop: asyncio.Event, pipelines: list[Pipeline], release_version: str
) -> None:
    """Poll until ``stop`` is set, then drain (finish or hand back in-flight work)."""
    with metrics_endpoint(settings):
        await _serve(settings, stop, pipelines, release_version)


async def _serve(
    settings: Settings, stop: asyncio.Event, pipelines: list[Pipeline], release_version: str
) -> None:
    signer = Signer.from_references(settings.signing_key, settings.signing_key_previous)
    async with open_clients(settings) as aws:
        identity = WorkerIdentity(worker_id=worker_id(), release_version=release_version)
        worker = TransitionWorker(
            pipelines={p.id: p for p in pipelines},
            work=await SqsQueue.open(aws.sqs, settings.resource("work")),
            results=await SqsQueue.open(aws.sqs, settings.resource("results")),
            payloads=payload_store(settings, aws),
            signer=signer,
            settings=settings,
            identity=identity,
        )
        polling = asyncio.create_task(worker.run(), name="poller")
        log.info(
            "worker ready",
            extra={
                "action": "start",
                "workerId": identity.worker_id,
                "pipelines": [p.id for p in pipelines],
            },
        )
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, polling], return_when=asyncio.FIRST_COMPLETED)
        await worker.stop()
        stopped.cancel()
        await polling
