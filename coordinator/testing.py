"""An in-memory coordinator: every port backed by its fake, for fast and exact tests.

Shipped in the package (not only under ``tests/``) so pipeline authors can test their own
pipelines against the real coordinator logic without any AWS emulator.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.registry import InMemoryRegistryTable, Registry, register_pipeline
from coordinator.service import ExecutionService
from coordinator.store import ExecutionStore
from coordinator.store.memory import InMemoryExecutionTable
from coordinator.sweeper import Sweeper
from coordinator.transitions import TransitionCommitter
from tpf.contract import Contract
from tpf.payloads import PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.pipeline import Pipeline
from tpf.queues import InMemoryQueue
from tpf.settings import Settings
from tpf.signing import Signer, SigningKey

TEST_KEY = SigningKey(b"a test key, never used outside tests")


@dataclass
class InMemoryCoordinator:
    settings: Settings
    table: InMemoryExecutionTable
    store: ExecutionStore
    registry: Registry
    payloads: PayloadStore
    work: InMemoryQueue
    results: InMemoryQueue
    dead_letters: InMemoryQueue
    signer: Signer
    dispatcher: Dispatcher
    committer: TransitionCommitter
    sweeper: Sweeper
    service: ExecutionService

    @classmethod
    def create(cls, settings: Settings | None = None) -> InMemoryCoordinator:
        settings = settings or Settings(profile="test", due_shards=2)
        timings = settings.timings
        visibility = timings.visibility_timeout.total_seconds()
        table = InMemoryExecutionTable(shards=settings.due_shards)
        store = ExecutionStore(table)
        registry = Registry(InMemoryRegistryTable())
        payloads = PayloadStore(InMemoryPayloadBackend())
        work = InMemoryQueue("work", visibility_s=visibility)
        results = InMemoryQueue("results", visibility_s=visibility)
        dead_letters = InMemoryQueue("dead-letters", visibility_s=visibility)
        signer = Signer(TEST_KEY)
        dispatcher = Dispatcher(
            store=store, registry=registry, work=work, signer=signer, timings=timings
        )
        committer = TransitionCommitter(
            store=store,
            registry=registry,
            payloads=payloads,
            dispatcher=dispatcher,
            dead_letters=DeadLetterPublisher(dead_letters),
        )
        return cls(
            settings=settings,
            table=table,
            store=store,
            registry=registry,
            payloads=payloads,
            work=work,
            results=results,
            dead_letters=dead_letters,
            signer=signer,
            dispatcher=dispatcher,
            committer=committer,
            sweeper=Sweeper(
                store=store,
                dispatcher=dispatcher,
                committer=committer,
                shards=settings.due_shards,
                timings=timings,
            ),
            service=ExecutionService(
                store=store,
                registry=registry,
                payloads=payloads,
                dispatcher=dispatcher,
                timings=timings,
            ),
        )

    async def register(self, pipeline: Pipeline, release_version: str = "1.0.0") -> Contract:
        """Register the pipeline's contract and a release of it, and activate that release."""
        return await register_pipeline(self.registry, pipeline, release_version, now_ms=1)
