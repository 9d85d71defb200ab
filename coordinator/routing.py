"""Routing: every command goes to the work queue of the release its execution is pinned to.

Each release (a pipeline at a version) has its own queue (``infra.resources.work_queue``),
declared as a release-scoped resource, created when the release is activated and retired once
nothing is pinned to it. Workers poll only their release's queue, so a v2 worker never sees a
v1 command; a command that reaches a worker of another release anyway (a misconfigured
consumer) is refused unrun and re-routed by the results consumer.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from infra.provision import provision_release, retire_release
from infra.resources import Release, work_queue
from tpf.clock import now_ms
from tpf.queues import InMemoryQueue, Queue, SqsQueue
from tpf.settings import Settings
from tpf.substrate import Endpoints
from tpf.wire import TransitionCommand, TransitionResult

if TYPE_CHECKING:
    from coordinator.rest_workers import RestWorkerClient
    from coordinator.workers import WorkerDirectory

log = logging.getLogger("tpf.coordinator")


class WorkQueues(Protocol):
    """Port: the work queue of each release, a (pipeline id, version) pair."""

    async def for_release(self, pipeline_id: str, release_version: str) -> Queue: ...

    async def create(self, pipeline_id: str, release_version: str) -> None:
        """Make the release's queue exist (idempotent); activation calls it first."""

    async def retire(self, pipeline_id: str, release_version: str) -> None:
        """Delete the release's queue (and its dead-letter queue)."""


class SqsWorkQueues:
    def __init__(self, sqs: Any, settings: Settings, endpoints: Endpoints | None = None) -> None:
        self.sqs, self.settings, self.endpoints = sqs, settings, endpoints
        self._open: dict[Release, SqsQueue] = {}

    async def for_release(self, pipeline_id: str, release_version: str) -> Queue:
        release = (pipeline_id, release_version)
        queue = self._open.get(release)
        if queue is None:
            name = self.settings.resource(work_queue(*release))
            try:
                queue = await SqsQueue.open(self.sqs, name)
            except self.sqs.exceptions.QueueDoesNotExist:
                # Activated another way (registered directly, `tpf register`), or retired while
                # an execution still needed it (a late re-drive): create it now.
                await self.create(*release)
                queue = await SqsQueue.open(self.sqs, name)
            self._open[release] = queue
        return queue

    async def create(self, pipeline_id: str, release_version: str) -> None:
        # The provisioner is synchronous boto3; activation is rare, so a thread is fine.
        release = (pipeline_id, release_version)
        await asyncio.to_thread(provision_release, self.settings, release, endpoints=self.endpoints)

    async def retire(self, pipeline_id: str, release_version: str) -> None:
        release = (pipeline_id, release_version)
        self._open.pop(release, None)
        await asyncio.to_thread(retire_release, self.settings, release, endpoints=self.endpoints)


class InMemoryWorkQueues:
    """One queue per release version, whatever the pipeline: unit tests drive several
    pipelines of one version through a single queue (``InMemoryCoordinator.work``)."""

    def __init__(self, *, visibility_s: float = 30.0) -> None:
        self.visibility_s = visibility_s
        self.queues: dict[str, InMemoryQueue] = {}

    async def for_release(self, pipeline_id: str, release_version: str) -> Queue:
        return self.queue(release_version)

    def queue(self, release_version: str) -> InMemoryQueue:
        if release_version not in self.queues:
            name = f"work-{release_version}"
            self.queues[release_version] = InMemoryQueue(name, visibility_s=self.visibility_s)
        return self.queues[release_version]

    async def create(self, pipeline_id: str, release_version: str) -> None:
        self.queue(release_version)

    async def retire(self, pipeline_id: str, release_version: str) -> None:
        self.queues.pop(release_version, None)


class RestDispatch:
    """Commands of a release whose healthy workers serve REST go over signed HTTP instead of
    its queue; the signed answer is committed like a result from the results queue.

    A failed call (refused, unreachable, a bad answer) commits nothing: the transition's
    deadline passes and the sweeper retries it, exactly as for a command lost in a queue.
    """

    def __init__(
        self,
        *,
        workers: WorkerDirectory,
        client: RestWorkerClient,
        commit: Callable[[TransitionResult, int], Awaitable[object]],
    ) -> None:
        self.workers, self.client, self.commit = workers, client, commit
        self._calls: set[asyncio.Task[None]] = set()

    async def endpoint(self, pipeline_id: str, release_version: str, now_ms: int) -> str | None:
        healthy = await self.workers.healthy(pipeline_id, release_version, now_ms)
        endpoints = [w.endpoint for w in healthy if w.protocol == "rest" and w.endpoint]
        return random.choice(endpoints) if endpoints else None

    def start(self, endpoint: str, command: TransitionCommand, *, delay_s: int) -> None:
        call = asyncio.create_task(self._call(endpoint, command, delay_s))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def _call(self, endpoint: str, command: TransitionCommand, delay_s: int) -> None:
        fields = {"executionId": command.execution_id, "transitionKey": command.transition_key}
        if delay_s:
            await asyncio.sleep(delay_s)
        try:
            result = await self.client.execute(endpoint, command)
        except Exception as exc:
            log.warning(
                "REST worker call failed, the deadline will retry it: %s",
                exc,
                extra={"action": "rest-call-failed", "endpoint": endpoint, **fields},
            )
            return
        try:
            await self.commit(result, now_ms())
        except Exception:
            log.exception("REST result not committed", extra={"action": "commit-result", **fields})

    async def close(self) -> None:
        for call in list(self._calls):
            call.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        await self.client.aclose()
