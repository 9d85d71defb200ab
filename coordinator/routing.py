"""Routing: every command goes to the work queue of the release its execution is pinned to.

Each release version has its own queue (``infra.resources.work_queue``), declared as a
release-scoped resource, created when the release is activated and retired once nothing is
pinned to it. Workers poll only their release's queue, so a v2 worker never sees a v1 command;
a command that reaches a worker of another release anyway (a misconfigured consumer) is refused
unrun and re-routed by the results consumer.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from infra.provision import provision_release
from infra.resources import work_queue
from tpf.queues import InMemoryQueue, Queue, SqsQueue
from tpf.settings import Settings
from tpf.substrate import Endpoints


class WorkQueues(Protocol):
    """Port: the work queue of each release."""

    async def for_release(self, release_version: str) -> Queue: ...

    async def create(self, release_version: str) -> None:
        """Make the release's queue exist (idempotent); activation calls it first."""


class SqsWorkQueues:
    def __init__(self, sqs: Any, settings: Settings, endpoints: Endpoints | None = None) -> None:
        self.sqs, self.settings, self.endpoints = sqs, settings, endpoints
        self._open: dict[str, SqsQueue] = {}

    async def for_release(self, release_version: str) -> Queue:
        queue = self._open.get(release_version)
        if queue is None:
            name = self.settings.resource(work_queue(release_version))
            queue = self._open[release_version] = await SqsQueue.open(self.sqs, name)
        return queue

    async def create(self, release_version: str) -> None:
        # The provisioner is synchronous boto3; activation is rare, so a thread is fine.
        await asyncio.to_thread(
            provision_release, self.settings, release_version, endpoints=self.endpoints
        )


class InMemoryWorkQueues:
    def __init__(self, *, visibility_s: float = 30.0) -> None:
        self.visibility_s = visibility_s
        self.queues: dict[str, InMemoryQueue] = {}

    async def for_release(self, release_version: str) -> Queue:
        return self.queue(release_version)

    def queue(self, release_version: str) -> InMemoryQueue:
        if release_version not in self.queues:
            name = work_queue(release_version)
            self.queues[release_version] = InMemoryQueue(name, visibility_s=self.visibility_s)
        return self.queues[release_version]

    async def create(self, release_version: str) -> None:
        self.queue(release_version)
