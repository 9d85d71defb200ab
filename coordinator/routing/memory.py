"""Work queues in memory."""

from __future__ import annotations

from tpf.queues import InMemoryQueue, Queue


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
