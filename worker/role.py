"""The worker process: a release's transitions, from its work queue or over signed REST.

At start a worker checks that its code is the release it claims to run (the contract hash of
each hosted pipeline must equal the registered one), then reports its presence on the results
channel and keeps doing so; it drains on SIGTERM or when an operator asks (finish what it has,
take nothing new), reporting DRAINING and finally STOPPED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Iterable, Iterator

from infra.resources import work_queue
from tpf.contract import Contract
from tpf.errors import ConfigurationError, NotFound
from tpf.payloads.dynamodb_s3 import payload_store
from tpf.pipeline import Pipeline
from tpf.queues import SqsQueue
from tpf.registry import Registry, ReleaseRecord
from tpf.registry.dynamodb import DynamoRegistryTable
from tpf.settings import Settings
from tpf.signing import NonceCache, Signer, signer_for
from tpf.substrate import AwsClients, open_clients
from tpf.wire import HostedPipeline, WorkerIdentity, WorkerPresence
from worker.command import CommandHandler, epoch_ms
from worker.fence import DynamoTransitionFence
from worker.poller import TransitionWorker
from worker.presence import PresenceReporter, registry_drain_check

log = logging.getLogger("tpf.worker")


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def verify_release(
    registry: Registry, pipelines: list[Pipeline], release_version: str
) -> list[ReleaseRecord]:
    """The registered release of each pipeline; refuses code that is not that release."""
    releases = []
    for pipeline in pipelines:
        try:
            release = await registry.release(pipeline.id, release_version)
        except NotFound as exc:
            raise ConfigurationError(
                f"release {release_version} of {pipeline.id!r} is not registered: register it "
                "(tpf release register) before starting its workers"
            ) from exc
        code = Contract.from_pipeline(pipeline).version
        if code != release.contract_version:
            raise ConfigurationError(
                f"refusing to start: the code of {pipeline.id!r} has contract {code[:19]}…, "
                f"but release {release_version} registered {release.contract_version[:19]}…"
            )
        releases.append(release)
    return releases


async def _all(runs: Iterable[Awaitable[None]]) -> None:
    await asyncio.gather(*runs)


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
    settings: Settings,
    stop: asyncio.Event,
    pipelines: list[Pipeline],
    release_version: str,
    *,
    rest_port: int | None = None,
) -> None:
    """Run until ``stop`` is set or a drain is requested, then drain (finish or hand back
    in-flight work). With ``rest_port`` the worker serves signed REST instead of polling."""
    with metrics_endpoint(settings):
        signer = signer_for(settings)
        async with open_clients(settings) as aws:
            registry = Registry(DynamoRegistryTable(aws.dynamodb, settings.resource("registry")))
            releases = await verify_release(registry, pipelines, release_version)
            await _serve(settings, stop, pipelines, releases, aws, signer, rest_port)


async def _serve(
    settings: Settings,
    stop: asyncio.Event,
    pipelines: list[Pipeline],
    releases: list[ReleaseRecord],
    aws: AwsClients,
    signer: Signer,
    rest_port: int | None,
) -> None:
    release_version = releases[0].release_version
    identity = WorkerIdentity(worker_id=worker_id(), release_version=release_version)
    endpoint = f"http://{settings.api_host}:{rest_port}" if rest_port else None
    presence = WorkerPresence(
        worker_id=identity.worker_id,
        release_version=release_version,
        pipelines=[
            HostedPipeline(pipeline_id=r.pipeline_id, contract_version=r.contract_version)
            for r in releases
        ],
        artifact_digest=releases[0].primary_artifact_digest,
        transport="rest" if rest_port else "sqs",
        endpoint=endpoint,
        sent_at_epoch_ms=0,
    )
    results = await SqsQueue.open(aws.sqs, settings.resource("results"))
    reporter = PresenceReporter(
        results=results,
        signer=signer,
        presence=presence,
        interval_s=settings.timings.heartbeat_interval.total_seconds(),
        ttl_ms=int(settings.timings.worker_stale.total_seconds() * 1000),
        clock=epoch_ms,
        drain_requested=registry_drain_check(aws.dynamodb, settings.resource("registry"), presence),
    )
    common = {
        "pipelines": {p.id: p for p in pipelines},
        "results": results,
        "payloads": payload_store(settings, aws),
        "signer": signer,
        "identity": identity,
        "fence": DynamoTransitionFence(aws.dynamodb, settings.resource("executions")),
    }
    serving_stop = asyncio.Event()
    if rest_port is None:
        # One poller per hosted release: each pipeline's release has its own work queue.
        pollers = [
            TransitionWorker(
                work=await SqsQueue.open(
                    aws.sqs, settings.resource(work_queue(r.pipeline_id, r.release_version))
                ),
                settings=settings,
                **common,  # type: ignore[arg-type]
            )
            for r in releases
        ]
        serving = asyncio.create_task(_all(p.run() for p in pollers), name="pollers")

        async def finish() -> None:
            await asyncio.gather(*(p.stop() for p in pollers))
            # The deletes of the last commands handled, still waiting for company.
            await asyncio.gather(*(p.work.flush() for p in pollers))

    else:
        from worker.rest import serve_rest, worker_app

        handler = CommandHandler(timings=settings.timings, **common)  # type: ignore[arg-type]
        app = worker_app(handler, signer, NonceCache(), ready=lambda: not serving_stop.is_set())
        serving = asyncio.create_task(
            serve_rest(app, settings.api_host, rest_port, serving_stop), name="rest"
        )

        async def finish() -> None:
            serving_stop.set()
            await serving

    drain = asyncio.Event()
    reporting = asyncio.create_task(reporter.run(serving_stop, drain), name="presence")
    log.info(
        "worker ready",
        extra={
            "action": "start",
            "workerId": identity.worker_id,
            "release": release_version,
            "transport": presence.transport,
            "pipelines": [p.id for p in pipelines],
        },
    )
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(drain.wait()), serving]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    await reporter.announce("DRAINING")
    await finish()
    serving_stop.set()
    await reporting
    await reporter.announce("STOPPED")
    stop.set()  # a drain requested by an operator ends the process like a SIGTERM
    for task in waits[:2]:
        task.cancel()
