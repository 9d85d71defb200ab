"""A worker over in-memory fakes, and the step pipelines tests drive it with.

Shared by the unit tier (ASGI in memory, the Lambda container) and the integration tier (real
uvicorn on a real port), so both build the same worker the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tpf.payloads import PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.pipeline import Pipeline
from tpf.queues import InMemoryQueue, Queue
from tpf.settings import Settings
from tpf.signing import Signer
from tpf.wire import TransitionCommand, WorkerIdentity
from worker.command import CommandHandler, epoch_ms

ORDER = {"orderId": "o-1", "amountCents": 1000, "customer": "Ada"}
"""An input of ``examples.orders``."""


class Job(BaseModel):
    name: str


def command_handler(
    *pipelines: Pipeline,
    signer: Signer,
    identity: WorkerIdentity,
    results: Queue | None = None,
    **options: Any,
) -> CommandHandler:
    """A worker's command handler hosting ``pipelines``, with in-memory payloads and results."""
    return CommandHandler(
        pipelines={p.id: p for p in pipelines},
        results=results if results is not None else InMemoryQueue("results"),
        payloads=PayloadStore(InMemoryPayloadBackend()),
        signer=signer,
        timings=Settings(profile="test").timings,
        identity=identity,
        **options,
    )


def dispatched(command: TransitionCommand, signer: Signer) -> TransitionCommand:
    """Signed for the work channel, as the dispatcher sends every command."""
    return signer.sign(command, channel="work", now_ms=epoch_ms(), ttl_ms=86_400_000)


@dataclass
class Counted:
    """A one-step pipeline that records every run of its step."""

    runs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pipeline = Pipeline("org.example.counted", input=Job)

        @self.pipeline.step()
        async def count(job: Job) -> Job:
            self.runs.append(job.name)
            return job


@dataclass
class Gate:
    """A step that blocks until the test opens it, recording which jobs started."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    started: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pipeline = Pipeline("org.example.gated", input=Job)

        @self.pipeline.step()
        async def wait_for_gate(job: Job) -> Job:
            self.started.append(job.name)
            await self.opened.wait()
            return job
