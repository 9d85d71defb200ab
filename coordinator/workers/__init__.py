"""The worker directory: which workers run which release, and whether they can take work.

Workers tell the coordinator who they are with presence messages on the results channel (at
start, every heartbeat interval, as they drain); TPF-style workers and Lambda deployments use
the admin API instead. Either way each (pipeline, worker) is one item in the registry table::

    pk = pipeline#<pipelineId>   sk = worker#<workerId>

    rv cv kd pr ep fn ai ad      release, contract, kind, protocol, endpoint, function name,
                                 artifact id and digest, as last reported
    rs                           reported state: RUNNING, DRAINING or STOPPED
    hb  ra                       last heartbeat, registration (epoch ms; ra set once)
    dr                           drain requested (epoch ms); set by an operator, read by the
                                 worker, never cleared by a presence
    ttl                          last heartbeat + 1 day (epoch s); none for Lambda workers,
                                 which do not heartbeat

A worker's state is derived, never stored::

    drain requested, or reported DRAINING/STOPPED  -> DRAINING
    lambda kind: event source mapping enabled      -> HEALTHY, else STALE
    heartbeat within stale_after                   -> HEALTHY, else STALE

Submission admits work for a release only while a HEALTHY worker of it exists, so ``healthy``
is on the submit path and answers from a short cache.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

from coordinator.workers.port import EventSourceMappings, Item, Value, WorkerTable
from coordinator.workers.records import (
    ITEM_TTL,
    Health,
    Kind,
    WorkerProtocol,
    WorkerRecord,
    WorkerRegistration,
    _expires_at_s,
)
from tpf.registry.worker_items import worker_item_key
from tpf.wire import WorkerPresence

__all__ = [
    "ITEM_TTL",
    "EventSourceMappings",
    "Health",
    "Item",
    "Kind",
    "Value",
    "WorkerDirectory",
    "WorkerProtocol",
    "WorkerRecord",
    "WorkerRegistration",
    "WorkerTable",
]

log = logging.getLogger("tpf.coordinator")
T = TypeVar("T")


class WorkerDirectory:
    def __init__(
        self,
        table: WorkerTable,
        *,
        stale_after: timedelta,
        mappings: EventSourceMappings | None = None,
        cache_ttl_s: float = 1.0,
        mapping_ttl_s: float = 10.0,
    ) -> None:
        self.table = table
        self.stale_after = stale_after
        self.mappings = mappings
        """Without it, registered Lambda workers are trusted to be consuming."""
        self.cache_ttl_ms = int(cache_ttl_s * 1000)
        self.mapping_ttl_ms = int(mapping_ttl_s * 1000)
        # Caches are timed by the callers' now_ms, so a clock that steps back refreshes them.
        self._healthy: dict[tuple[str, str], tuple[int, builtins.list[WorkerRecord]]] = {}
        self._enabled: dict[str, tuple[int, bool]] = {}
        self._loading: dict[tuple[str, str], asyncio.Lock] = {}

    async def report(self, presence: WorkerPresence, now_ms: int) -> None:
        """Record a (verified) presence message: one write per hosted pipeline."""
        fields: dict[str, Value] = {
            "rv": presence.release_version,
            "kd": "process",
            "pr": presence.transport,
            "ep": presence.endpoint,
            "ad": presence.artifact_digest,
            "rs": presence.state,
            "hb": now_ms,
            "ttl": _expires_at_s(now_ms),
        }
        writes = []
        for hosted in presence.pipelines:
            pk, sk = worker_item_key(hosted.pipeline_id, presence.worker_id)
            per_pipeline = {**fields, "cv": hosted.contract_version}
            writes.append(self.table.put(pk, sk, per_pipeline, registered_at_ms=now_ms))
        await asyncio.gather(*writes)
        for hosted in presence.pipelines:
            self._forget(hosted.pipeline_id)

    async def register(
        self, pipeline_id: str, registration: WorkerRegistration, now_ms: int
    ) -> WorkerRecord:
        process = registration.kind == "process"
        fields: dict[str, Value] = {
            "rv": registration.release_version,
            "cv": registration.contract_version,
            "kd": registration.kind,
            "pr": registration.protocol,
            "ep": registration.endpoint,
            "fn": registration.function_name,
            "ai": registration.artifact_id,
            "ad": registration.artifact_digest,
            "rs": "RUNNING",
            "hb": now_ms if process else None,
            "ttl": _expires_at_s(now_ms) if process else None,
        }
        pk, sk = worker_item_key(pipeline_id, registration.worker_id)
        item = await self.table.put(pk, sk, fields, registered_at_ms=now_ms)
        self._forget(pipeline_id)
        return await self._record(item, now_ms)

    async def heartbeat(self, pipeline_id: str, worker_id: str, now_ms: int) -> WorkerRecord:
        pk, sk = worker_item_key(pipeline_id, worker_id)
        item = await self.table.heartbeat(pk, sk, at_ms=now_ms, expires_at_s=_expires_at_s(now_ms))
        self._forget(pipeline_id)
        return await self._record(item, now_ms)

    async def drain(self, pipeline_id: str, worker_id: str, now_ms: int) -> WorkerRecord:
        pk, sk = worker_item_key(pipeline_id, worker_id)
        item = await self.table.request_drain(pk, sk, at_ms=now_ms)
        self._forget(pipeline_id)
        log.info(
            "worker drain requested",
            extra={"action": "drain", "pipelineId": pipeline_id, "workerId": worker_id},
        )
        return await self._record(item, now_ms)

    async def list(self, pipeline_id: str, now_ms: int) -> list[WorkerRecord]:
        pk, _ = worker_item_key(pipeline_id, "")
        items = await self.table.query(pk)
        return list(await asyncio.gather(*(self._record(item, now_ms) for item in items)))

    async def healthy(
        self, pipeline_id: str, release_version: str, now_ms: int
    ) -> builtins.list[WorkerRecord]:
        """HEALTHY workers of the release; at most ``cache_ttl_s`` old."""
        key = (pipeline_id, release_version)
        cached = self._fresh(self._healthy.get(key), now_ms, self.cache_ttl_ms)
        if cached is not None:
            return cached
        # One query per key at a time: a burst of submissions waits for the first one's answer.
        async with self._loading.setdefault(key, asyncio.Lock()):
            cached = self._fresh(self._healthy.get(key), now_ms, self.cache_ttl_ms)
            if cached is not None:
                return cached
            workers = [
                w
                for w in await self.list(pipeline_id, now_ms)
                if w.release_version == release_version and w.state == "HEALTHY"
            ]
            self._healthy[key] = (now_ms, workers)
            return workers

    def invalidate(self) -> None:
        """Forget every cached answer (tests, and after an operator changed the fleet)."""
        self._healthy.clear()
        self._enabled.clear()

    def _forget(self, pipeline_id: str) -> None:
        for key in [k for k in self._healthy if k[0] == pipeline_id]:
            del self._healthy[key]

    @staticmethod
    def _fresh(cached: tuple[int, T] | None, now_ms: int, ttl_ms: int) -> T | None:
        if cached is None or not 0 <= now_ms - cached[0] < ttl_ms:
            return None
        return cached[1]

    async def _record(self, item: Mapping[str, Any], now_ms: int) -> WorkerRecord:
        record = WorkerRecord.from_item(item)
        enabled = False
        if record.kind == "lambda" and record.function_name:
            enabled = await self._mapping_enabled(record.function_name, now_ms)
        state = record.health(now_ms=now_ms, stale_after=self.stale_after, mapping_enabled=enabled)
        return record.model_copy(update={"state": state})

    async def _mapping_enabled(self, function_name: str, now_ms: int) -> bool:
        if self.mappings is None:
            return True
        cached = self._enabled.get(function_name)
        fresh = self._fresh(cached, now_ms, self.mapping_ttl_ms)
        if fresh is not None:
            return fresh
        try:
            enabled = await self.mappings.enabled(function_name)
        except Exception:
            # Admission runs on this answer: keep the last one through a failed lookup, and do
            # not ask again before the cache would have expired.
            enabled = cached[1] if cached is not None else False
            log.warning(
                "event source mapping lookup failed",
                extra={"action": "worker-health", "functionName": function_name},
                exc_info=True,
            )
        self._enabled[function_name] = (now_ms, enabled)
        return enabled


# -- adapters ---------------------------------------------------------------------------------
