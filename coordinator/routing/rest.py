"""Dispatch over signed HTTP, for releases whose healthy workers serve REST."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tpf.clock import now_ms
from tpf.wire import TransitionCommand, TransitionResult

if TYPE_CHECKING:
    from coordinator.rest_workers import RestWorkerClient
    from coordinator.workers import WorkerDirectory

log = logging.getLogger("tpf.coordinator")


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
