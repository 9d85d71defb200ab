"""How a coordinator's parts fit together, whatever adapters back its ports.

``coordinator.role`` assembles it over DynamoDB and SQS; ``coordinator.testing`` over the
in-memory fakes. Both go through ``assemble``, so tests exercise the production wiring.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.awaits import (
    Admission,
    AwaitService,
    AwaitTable,
    InteractionApi,
    SqsRequests,
    Transports,
)
from coordinator.awaits.completions import CompletionConsumer
from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.ingest import IngestConsumer, UploadedObject
from coordinator.operations import OperatorActions
from coordinator.rest_workers import RestWorkerClient
from coordinator.results import ResultsConsumer
from coordinator.routing import RestDispatch, WorkQueues
from coordinator.service import ExecutionService
from coordinator.store import ExecutionStore
from coordinator.sweeper import Sweeper
from coordinator.transitions import TransitionCommitter
from coordinator.workers import WorkerDirectory
from tpf.clock import now_ms
from tpf.payloads import PayloadStore
from tpf.queues import Queue
from tpf.registry import Registry
from tpf.runtime import InvocationRuntime
from tpf.settings import Settings
from tpf.signing import ProviderKeys, Signer
from tpf.wire import TransitionResult


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
    operations: OperatorActions
    awaits: AwaitService
    completions: CompletionConsumer
    ingest: IngestConsumer
    workers: WorkerDirectory

    async def close(self) -> None:
        """Flush what is written off the commit path (history entries, the deletes of handled
        messages), end REST calls."""
        if self.dispatcher.rest is not None:
            await self.dispatcher.rest.close()
        if self.store.history is not None:
            await self.store.history.close()
        for queue in (self.results.queue, self.completions.queue, self.ingest.queue):
            await queue.flush()


def assemble(
    *,
    settings: Settings,
    store: ExecutionStore,
    registry: Registry,
    payloads: PayloadStore,
    work: WorkQueues,
    results: Queue,
    dead_letters: Queue,
    awaits: AwaitTable,
    await_requests: Queue,
    await_completions: Queue,
    ingest: Queue,
    signer: Signer,
    workers: WorkerDirectory,
    transports: Transports | None = None,
) -> Coordinator:
    timings = settings.timings
    dispatcher = Dispatcher(
        store=store,
        registry=registry,
        work=work,
        signer=signer,
        timings=timings,
        payloads=payloads,
    )
    dead_letter_publisher = DeadLetterPublisher(dead_letters)
    await_service = AwaitService(
        table=awaits,
        store=store,
        registry=registry,
        payloads=payloads,
        dispatcher=dispatcher,
        dead_letters=dead_letter_publisher,
        transports=transports or Transports(InteractionApi(), SqsRequests(await_requests)),
        signer=signer,
        timings=timings,
        answers=await_completions,
        admission=Admission(
            per_unit=settings.await_unit_in_flight, per_tenant=settings.await_tenant_in_flight
        ),
        shards=settings.due_shards,
    )
    payloads.answers = await_service.recorded_answers
    committer = TransitionCommitter(
        store=store,
        registry=registry,
        payloads=payloads,
        dispatcher=dispatcher,
        dead_letters=dead_letter_publisher,
        await_grace=timings.await_stall,
        open_await=await_service.open,
        retry_override=settings.retry_override,
    )

    async def commit(result: TransitionResult, at_ms: int) -> object:
        return await committer.commit(result, now_ms=at_ms)

    dispatcher.rest = RestDispatch(
        workers=workers,
        client=RestWorkerClient(
            signer,
            InvocationRuntime(role="coordinator"),
            timeout_s=settings.worker_request_timeout.total_seconds(),
        ),
        commit=commit,
    )
    service = ExecutionService(
        store=store,
        registry=registry,
        payloads=payloads,
        dispatcher=dispatcher,
        timings=timings,
        workers=workers,
        submit_without_worker=settings.submit_without_worker,
    )

    async def submit_upload(obj: UploadedObject) -> None:
        await service.submit(
            tenant_id=settings.ingest_tenant,
            pipeline_id=settings.ingest_pipeline,
            value=obj.as_input(),
            idempotency_key=obj.idempotency_key,
            now_ms=now_ms(),
        )

    return Coordinator(
        settings=settings,
        store=store,
        registry=registry,
        payloads=payloads,
        dispatcher=dispatcher,
        committer=committer,
        results=ResultsConsumer(
            queue=results,
            committer=committer,
            store=store,
            signer=signer,
            timings=timings,
            dispatcher=dispatcher,
            workers=workers,
        ),
        sweeper=Sweeper(
            store=store,
            dispatcher=dispatcher,
            committer=committer,
            shards=settings.due_shards,
            timings=timings,
            settle_parked=await_service.settle_parked,
        ),
        service=service,
        operations=OperatorActions(
            store=store,
            dispatcher=dispatcher,
            dead_letters=dead_letter_publisher,
            abandon_await=await_service.abandon,
        ),
        awaits=await_service,
        completions=CompletionConsumer(
            queue=await_completions,
            awaits=await_service,
            timings=timings,
            provider_auth=settings.provider_auth,
            provider_keys=ProviderKeys.from_references(settings.provider_keys, settings=settings),
        ),
        ingest=IngestConsumer(queue=ingest, submit=submit_upload, timings=timings),
        workers=workers,
    )
