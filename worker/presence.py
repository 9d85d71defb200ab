"""A worker's presence: who it is, what it runs and whether it is draining.

Workers report themselves, signed, on the results channel — at start, every heartbeat interval
and as they drain — never through the admin API and never with the admin token. The coordinator
keeps the worker registry from these reports and admits submissions for a release only while a
worker of it is healthy. An operator's drain request is an attribute on the worker's registry
items, which the worker reads after each report (one GetItem per hosted pipeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tpf.dynamodb import Items
from tpf.queues import Outgoing, Queue
from tpf.registry.worker_items import DRAIN_ATTRIBUTE, worker_item_key
from tpf.signing import Signer
from tpf.wire import WorkerPresence, WorkerState

log = logging.getLogger("tpf.worker")

DrainCheck = Callable[[], Awaitable[bool]]


class PresenceReporter:
    def __init__(
        self,
        *,
        results: Queue,
        signer: Signer,
        presence: WorkerPresence,
        interval_s: float,
        ttl_ms: int,
        clock: Callable[[], int],
        drain_requested: DrainCheck | None = None,
    ) -> None:
        self.results, self.signer, self.presence = results, signer, presence
        self.interval_s, self.ttl_ms, self._clock = interval_s, ttl_ms, clock
        self.drain_requested = drain_requested

    async def announce(self, state: WorkerState) -> bool:
        """Send one report; a failure is logged (the next interval tries again)."""
        now = self._clock()
        report = self.presence.model_copy(update={"state": state, "sent_at_epoch_ms": now})
        signed = self.signer.sign(report, channel="results", now_ms=now, ttl_ms=self.ttl_ms)
        try:
            await self.results.send(Outgoing(signed.to_json()))
        except Exception as exc:
            log.warning(
                "presence not reported: %s",
                exc,
                extra={"action": "presence-unsent", "workerId": self.presence.worker_id},
            )
            return False
        return True

    async def run(self, stop: asyncio.Event, drain: asyncio.Event) -> None:
        """Report RUNNING until ``stop``; set ``drain`` when an operator asks for a drain."""
        while not stop.is_set():
            await self.announce("RUNNING")
            if self.drain_requested is not None and await self._asked_to_drain():
                log.info(
                    "drain requested",
                    extra={"action": "drain-requested", "workerId": self.presence.worker_id},
                )
                drain.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)

    async def _asked_to_drain(self) -> bool:
        assert self.drain_requested is not None
        try:
            return await self.drain_requested()
        except Exception as exc:
            log.warning(
                "drain request unread: %s",
                exc,
                extra={"action": "drain-unread", "workerId": self.presence.worker_id},
            )
            return False


def registry_drain_check(dynamodb: Any, table_name: str, presence: WorkerPresence) -> DrainCheck:
    """Reads the drain attribute of the worker's registry items (strongly consistent)."""

    items = Items(dynamodb, table_name)

    async def requested() -> bool:
        for hosted in presence.pipelines:
            pk, sk = worker_item_key(hosted.pipeline_id, presence.worker_id)
            item = await items.get({"pk": pk, "sk": sk}, attributes=(DRAIN_ATTRIBUTE,))
            if item and DRAIN_ATTRIBUTE in item:
                return True
        return False

    return requested
