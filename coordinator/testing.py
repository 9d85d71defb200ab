"""An in-memory coordinator: every port backed by its fake, for fast and exact tests.

Shipped in the package (not only under ``tests/``) so pipeline authors can test their own
pipelines against the real coordinator logic without any AWS emulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.awaits import InMemoryAwaitTable
from coordinator.history import History, InMemoryHistoryTable
from coordinator.routing import InMemoryWorkQueues
from coordinator.store import ExecutionStore
from coordinator.store.memory import InMemoryExecutionTable
from coordinator.wiring import Coordinator, assemble
from coordinator.workers import WorkerDirectory
from coordinator.workers.memory import InMemoryWorkerTable
from tpf.contract import Contract
from tpf.payloads import PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.pipeline import Pipeline
from tpf.queues import InMemoryQueue
from tpf.registry import Registry, register_pipeline
from tpf.registry.memory import InMemoryRegistryTable
from tpf.settings import Settings
from tpf.signing import Signer, SigningKey

TEST_KEY = SigningKey(b"a test key, never used outside tests")


@dataclass
class InMemoryCoordinator(Coordinator):
    """A coordinator whose ports are fakes, with the fakes at hand for assertions."""

    table: InMemoryExecutionTable = field(default_factory=InMemoryExecutionTable)
    work_queues: InMemoryWorkQueues = field(default_factory=InMemoryWorkQueues)
    work: InMemoryQueue = field(default_factory=InMemoryQueue)
    """The work queue of release 1.0.0, the release ``register`` uses unless told otherwise."""
    results_queue: InMemoryQueue = field(default_factory=InMemoryQueue)
    dead_letters: InMemoryQueue = field(default_factory=InMemoryQueue)
    await_table: InMemoryAwaitTable = field(default_factory=InMemoryAwaitTable)
    await_requests: InMemoryQueue = field(default_factory=InMemoryQueue)
    await_completions: InMemoryQueue = field(default_factory=InMemoryQueue)
    ingest_queue: InMemoryQueue = field(default_factory=InMemoryQueue)
    signer: Signer = field(default_factory=lambda: Signer(TEST_KEY))

    @classmethod
    def create(cls, settings: Settings | None = None) -> InMemoryCoordinator:
        # Admission needs a worker's presence; tests that drive commands by hand have none
        # unless they say so (see the admission tests).
        settings = settings or Settings(profile="test", due_shards=2, submit_without_worker=True)
        visibility = settings.timings.visibility_timeout.total_seconds()
        table = InMemoryExecutionTable(shards=settings.due_shards)
        names = ("results", "dl", "requests", "completions", "ingest")
        work_queues = InMemoryWorkQueues(visibility_s=visibility)
        queues = {n: InMemoryQueue(n, visibility_s=visibility) for n in names}
        await_table = InMemoryAwaitTable(shards=settings.due_shards)
        signer = Signer(TEST_KEY)
        parts = assemble(
            settings=settings,
            store=ExecutionStore(table, History(InMemoryHistoryTable())),
            registry=Registry(InMemoryRegistryTable()),
            payloads=PayloadStore(InMemoryPayloadBackend()),
            work=work_queues,
            results=queues["results"],
            dead_letters=queues["dl"],
            awaits=await_table,
            await_requests=queues["requests"],
            await_completions=queues["completions"],
            ingest=queues["ingest"],
            signer=signer,
            workers=WorkerDirectory(
                InMemoryWorkerTable(), stale_after=settings.timings.worker_stale
            ),
        )
        return cls(
            **vars(parts),
            table=table,
            work_queues=work_queues,
            work=work_queues.queue("1.0.0"),
            results_queue=queues["results"],
            dead_letters=queues["dl"],
            await_table=await_table,
            await_requests=queues["requests"],
            await_completions=queues["completions"],
            ingest_queue=queues["ingest"],
            signer=signer,
        )

    async def sweep(self, now_ms: int) -> int:
        """One pass of both sweepers at ``now_ms``, as a replica's timers make them: executions
        (which also watch the deadlines of inbox awaits of one interaction), then awaits."""
        return await self.sweeper.sweep_once(now_ms) + await self.awaits.sweep_once(now_ms)

    async def register(self, pipeline: Pipeline, release_version: str = "1.0.0") -> Contract:
        """Register the pipeline's contract and a release of it, and activate that release."""
        return await register_pipeline(self.registry, pipeline, release_version, now_ms=1)
