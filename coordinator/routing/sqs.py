"""Work queues on SQS, one per release, created on activation or when first needed."""

from __future__ import annotations

import asyncio
from typing import Any

from infra.provision import provision_release, retire_release
from infra.resources import Release, work_queue
from tpf.queues import Queue, SqsQueue
from tpf.settings import Settings
from tpf.substrate import Endpoints


class SqsWorkQueues:
    def __init__(self, sqs: Any, settings: Settings, endpoints: Endpoints | None = None) -> None:
        self.sqs, self.settings, self.endpoints = sqs, settings, endpoints
        # Opening tasks, not queues: the burst of sends that first meets a release opens its
        # queue once (two requests), not once per send.
        self._open: dict[Release, asyncio.Task[SqsQueue]] = {}

    async def for_release(self, pipeline_id: str, release_version: str) -> Queue:
        release = (pipeline_id, release_version)
        opening = self._open.get(release)
        if opening is None:
            opening = asyncio.ensure_future(self._opened(release))
            self._open[release] = opening
        try:
            return await asyncio.shield(opening)
        except Exception:
            if self._open.get(release) is opening:
                del self._open[release]  # the next send tries again
            raise

    async def _opened(self, release: Release) -> SqsQueue:
        name = self.settings.resource(work_queue(*release))
        try:
            return await SqsQueue.open(self.sqs, name)
        except self.sqs.exceptions.QueueDoesNotExist:
            # Activated another way (registered directly, `tpf register`), or retired while
            # an execution still needed it (a late re-drive): create it now.
            await self.create(*release)
            return await SqsQueue.open(self.sqs, name)

    async def create(self, pipeline_id: str, release_version: str) -> None:
        # The provisioner is synchronous boto3; activation is rare, so a thread is fine.
        release = (pipeline_id, release_version)
        await asyncio.to_thread(provision_release, self.settings, release, endpoints=self.endpoints)

    async def retire(self, pipeline_id: str, release_version: str) -> None:
        release = (pipeline_id, release_version)
        self._open.pop(release, None)
        await asyncio.to_thread(retire_release, self.settings, release, endpoints=self.endpoints)
