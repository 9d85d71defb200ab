"""The work queues port: one queue per release. ``memory`` is its fake, ``sqs`` its adapter."""

from __future__ import annotations

from typing import Protocol

from tpf.queues import Queue


class WorkQueues(Protocol):
    """Port: the work queue of each release, a (pipeline id, version) pair."""

    async def for_release(self, pipeline_id: str, release_version: str) -> Queue: ...

    async def create(self, pipeline_id: str, release_version: str) -> None:
        """Make the release's queue exist (idempotent); activation calls it first."""

    async def retire(self, pipeline_id: str, release_version: str) -> None:
        """Delete the release's queue (and its dead-letter queue)."""
