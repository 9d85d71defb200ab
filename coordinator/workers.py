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
from typing import Any, Literal, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tpf.errors import Conflict, NotFound
from tpf.registry.worker_items import DRAIN_ATTRIBUTE, WORKER_PREFIX, worker_item_key
from tpf.wire import WorkerPresence, WorkerState

log = logging.getLogger("tpf.coordinator")

ITEM_TTL = timedelta(days=1)

Kind = Literal["process", "lambda"]
WorkerProtocol = Literal["sqs", "rest", "lambda"]
Health = Literal["HEALTHY", "STALE", "DRAINING"]
Value = str | int | None
"""An attribute value; ``None`` removes the attribute."""
Item = dict[str, Any]
T = TypeVar("T")


# -- records ----------------------------------------------------------------------------------


class WorkerRegistration(BaseModel):
    """The admin API's register body: TPF's fields, plus ``kind`` and ``functionName`` (ours)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    worker_id: str = Field(pattern=r"^[^/\s]{1,200}$")
    contract_version: str = Field(min_length=1, max_length=200)
    release_version: str = Field(min_length=1, max_length=200)
    kind: Kind = "process"
    protocol: WorkerProtocol | None = None
    """Defaults to ``lambda`` for Lambda workers and ``sqs`` otherwise."""
    endpoint: str | None = Field(default=None, max_length=2000)
    function_name: str | None = Field(default=None, min_length=1, max_length=200)
    artifact_id: str | None = Field(default=None, max_length=200)
    artifact_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")

    @model_validator(mode="before")
    @classmethod
    def _present(cls, data: Any) -> Any:
        """Make fields that depend on others explicit, so their validators run and a 400 points
        at the camelCase field (defaults would be reported under the Python name)."""
        if not isinstance(data, dict):
            return data
        absent = {
            alias: None
            for name, alias in _DEPENDENT.items()
            if data.get(name) is None and data.get(alias) is None
        }
        return {**data, **absent}

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    # Validators below read fields declared before them, so the 400 points at the field at fault.
    @field_validator("protocol", mode="after")
    @classmethod
    def _protocol_of_kind(
        cls, value: WorkerProtocol | None, info: ValidationInfo
    ) -> WorkerProtocol:
        lambda_kind = info.data.get("kind") == "lambda"
        if value is None:
            return "lambda" if lambda_kind else "sqs"
        if (value == "lambda") != lambda_kind:
            raise ValueError("protocol 'lambda' goes with kind 'lambda', and only with it")
        return value

    @field_validator("endpoint", mode="after")
    @classmethod
    def _endpoint_for_rest(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("protocol") == "rest" and not value:
            raise ValueError("a rest worker needs an endpoint")
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http(s) URL")
        return value

    @field_validator("function_name", mode="after")
    @classmethod
    def _function_for_lambda(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == "lambda" and not value:
            raise ValueError("a lambda worker needs a functionName")
        return value


_DEPENDENT = {"protocol": "protocol", "endpoint": "endpoint", "function_name": "functionName"}


class WorkerRecord(BaseModel):
    """One worker of one pipeline, as the admin API shows it."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    worker_id: str
    pipeline_id: str
    release_version: str
    contract_version: str | None = None
    kind: Kind = "process"
    protocol: WorkerProtocol = "sqs"
    endpoint: str | None = None
    function_name: str | None = None
    artifact_id: str | None = None
    artifact_digest: str | None = None
    reported_state: WorkerState = "RUNNING"
    drain_requested_at_epoch_ms: int | None = None
    registered_at_epoch_ms: int
    last_heartbeat_at_epoch_ms: int | None = None
    state: Health = "STALE"

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> WorkerRecord:
        return cls(
            worker_id=item["sk"].removeprefix(WORKER_PREFIX),
            pipeline_id=item["pk"].removeprefix("pipeline#"),
            release_version=item.get("rv", ""),
            contract_version=item.get("cv"),
            kind=item.get("kd", "process"),
            protocol=item.get("pr", "sqs"),
            endpoint=item.get("ep"),
            function_name=item.get("fn"),
            artifact_id=item.get("ai"),
            artifact_digest=item.get("ad"),
            reported_state=item.get("rs", "RUNNING"),
            drain_requested_at_epoch_ms=item.get(DRAIN_ATTRIBUTE),
            registered_at_epoch_ms=item.get("ra", 0),
            last_heartbeat_at_epoch_ms=item.get("hb"),
        )

    def health(self, *, now_ms: int, stale_after: timedelta, mapping_enabled: bool) -> Health:
        if self.drain_requested_at_epoch_ms is not None or self.reported_state != "RUNNING":
            return "DRAINING"
        if self.kind == "lambda":
            return "HEALTHY" if mapping_enabled else "STALE"
        heartbeat = self.last_heartbeat_at_epoch_ms
        stale_after_ms = stale_after // timedelta(milliseconds=1)
        if heartbeat is None or now_ms - heartbeat > stale_after_ms:
            return "STALE"
        return "HEALTHY"


def _expires_at_s(now_ms: int) -> int:
    return now_ms // 1000 + int(ITEM_TTL.total_seconds())


# -- ports ------------------------------------------------------------------------------------


class WorkerTable(Protocol):
    """Port: worker items of the registry table; every write returns the item after it."""

    async def put(
        self, pk: str, sk: str, fields: Mapping[str, Value], *, registered_at_ms: int
    ) -> Item:
        """Create or update: set ``fields`` (``None`` removes), set the registration time only
        when absent, and leave the drain request alone."""

    async def heartbeat(self, pk: str, sk: str, *, at_ms: int, expires_at_s: int) -> Item:
        """Move the heartbeat and expiry of an existing process worker. ``NotFound`` when there
        is no item, ``Conflict`` for a Lambda worker (it does not heartbeat and never expires)."""

    async def request_drain(self, pk: str, sk: str, *, at_ms: int) -> Item:
        """Mark an existing worker for draining; the first request's time stays. ``NotFound``
        when there is no item."""

    async def get(self, pk: str, sk: str) -> Item | None: ...

    async def query(self, pk: str) -> list[Item]:
        """Every worker item of the partition, in worker id order."""


class EventSourceMappings(Protocol):
    """Port: whether a Lambda function is consuming its queue."""

    async def enabled(self, function_name: str) -> bool: ...


def no_lambda_heartbeat(pk: str, sk: str) -> Conflict:
    return Conflict(
        f"worker {sk.removeprefix(WORKER_PREFIX)!r} of {pk} is a Lambda worker: its health is "
        "its event source mapping, not heartbeats",
        code="LAMBDA_WORKER",
    )


def unknown_worker(pk: str, sk: str) -> NotFound:
    return NotFound(f"no worker {sk.removeprefix(WORKER_PREFIX)!r} in {pk}")


# -- the directory ----------------------------------------------------------------------------


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


class InMemoryWorkerTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}

    async def put(
        self, pk: str, sk: str, fields: Mapping[str, Value], *, registered_at_ms: int
    ) -> Item:
        item = self.items.setdefault((pk, sk), {"pk": pk, "sk": sk, "ra": registered_at_ms})
        for name, value in fields.items():
            if value is None:
                item.pop(name, None)
            else:
                item[name] = value
        return dict(item)

    async def heartbeat(self, pk: str, sk: str, *, at_ms: int, expires_at_s: int) -> Item:
        item = self.items.get((pk, sk))
        if item is None:
            raise unknown_worker(pk, sk)
        if item.get("kd") == "lambda":
            raise no_lambda_heartbeat(pk, sk)
        item.update(hb=at_ms, ttl=expires_at_s)
        return dict(item)

    async def request_drain(self, pk: str, sk: str, *, at_ms: int) -> Item:
        item = self.items.get((pk, sk))
        if item is None:
            raise unknown_worker(pk, sk)
        item.setdefault(DRAIN_ATTRIBUTE, at_ms)
        return dict(item)

    async def get(self, pk: str, sk: str) -> Item | None:
        item = self.items.get((pk, sk))
        return dict(item) if item is not None else None

    async def query(self, pk: str) -> list[Item]:
        keys = sorted(k for k in self.items if k[0] == pk and k[1].startswith(WORKER_PREFIX))
        return [dict(self.items[k]) for k in keys]


class InMemoryEventSourceMappings:
    """Function name -> enabled; unknown functions have no mapping. Counts lookups."""

    def __init__(self, enabled: Mapping[str, bool] | None = None) -> None:
        self.states: dict[str, bool] = dict(enabled or {})
        self.lookups = 0

    def set(self, function_name: str, enabled: bool) -> None:
        self.states[function_name] = enabled

    async def enabled(self, function_name: str) -> bool:
        self.lookups += 1
        return self.states.get(function_name, False)
