"""Submit, status and result: the coordinator's entry points behind the HTTP API and the CLI."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from coordinator.dispatcher import Dispatcher
from coordinator.history import Change
from coordinator.store import ExecutionStore
from coordinator.store.search import ExecutionQuery, SearchPage
from coordinator.workers import WorkerDirectory
from tpf import metrics
from tpf.errors import InvalidInput, NotFound, TpfError
from tpf.payloads import PayloadRef, PayloadStore
from tpf.record_size import inline_room
from tpf.records import (
    MAX_KEY,
    MAX_PIPELINE,
    MAX_TENANT,
    ExecutionRecord,
    check_identifier,
    new_execution,
)
from tpf.registry import Registry
from tpf.settings import Timings


class NoActiveRelease(TpfError):
    """The pipeline is registered but no release of it is active (HTTP 409)."""


class NoHealthyWorker(TpfError):
    """No healthy worker runs the release a submission would be pinned to (HTTP 503)."""


@dataclass(frozen=True)
class Submission:
    record: ExecutionRecord
    duplicate: bool


@dataclass(frozen=True)
class ExecutionResult:
    record: ExecutionRecord
    result: Any | None
    result_type_id: str | None


def canonical(value: Any) -> bytes:
    """One byte form per document, so equal inputs have equal digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class ExecutionService:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        registry: Registry,
        payloads: PayloadStore,
        dispatcher: Dispatcher,
        timings: Timings,
        workers: WorkerDirectory,
        submit_without_worker: bool = False,
    ) -> None:
        self.store, self.registry, self.payloads = store, registry, payloads
        self.dispatcher, self.timings = dispatcher, timings
        self.workers = workers
        self.submit_without_worker = submit_without_worker
        """Accept submissions with no healthy worker of the release (they wait in its queue)."""

    async def submit(
        self,
        *,
        tenant_id: str,
        pipeline_id: str,
        value: Any,
        idempotency_key: str | None,
        now_ms: int,
    ) -> Submission:
        check_identifier(tenant_id, what="tenant id", pointer="", limit=MAX_TENANT)
        check_identifier(pipeline_id, what="pipelineId", pointer="/pipelineId", limit=MAX_PIPELINE)
        key = idempotency_key or uuid.uuid4().hex
        if len(key) > MAX_KEY:
            raise InvalidInput(
                f"idempotencyKey is longer than {MAX_KEY}", pointer="/idempotencyKey"
            )
        release = await self.registry.active_release(pipeline_id, tenant_id)
        if release is None:
            if await self.registry.known_pipeline(pipeline_id):
                raise NoActiveRelease(f"pipeline {pipeline_id!r} has no active release")
            raise NotFound(f"unknown pipeline {pipeline_id!r}")
        contract = await self.registry.contract(pipeline_id, release.contract_version)
        contract.validate_input(value)
        if not self.submit_without_worker:
            await self._admit(pipeline_id, release.release_version, now_ms)

        data = canonical(value)
        unstored = new_execution(
            tenant_id=tenant_id,
            pipeline_id=pipeline_id,
            idempotency_key=key,
            contract_version=release.contract_version,
            release_version=release.release_version,
            input=PayloadRef.of_inline(""),
            now_ms=now_ms,
            dispatch_deadline_ms=self.dispatcher.deadline(now_ms),
        )
        stored = await self.payloads.put(
            tenant_id,
            unstored.execution_id,
            data,
            inline_limit=inline_room(unstored, "input"),
        )
        record = unstored.change(input=stored)
        outcome = await self.store.submit(record, now_ms=now_ms)
        if outcome.duplicate:
            return Submission(outcome.record, duplicate=True)
        await self.dispatcher.send(outcome.record, now_ms=now_ms, payload=data)
        return Submission(outcome.record, duplicate=False)

    async def _admit(self, pipeline_id: str, release_version: str, now_ms: int) -> None:
        if await self.workers.healthy(pipeline_id, release_version, now_ms):
            return
        metrics.ADMISSIONS_REFUSED.labels(pipeline=pipeline_id).inc()
        raise NoHealthyWorker(
            f"no healthy worker runs release {release_version} of pipeline {pipeline_id!r}: "
            f"start one with `tpf worker --release {release_version}`, or set "
            "TPF_SUBMIT_WITHOUT_WORKER=true to queue submissions until one comes"
        )

    async def status(self, tenant_id: str, execution_id: str) -> ExecutionRecord:
        record = await self.store.get(tenant_id, execution_id)
        if record is None:
            raise NotFound(f"no execution {execution_id} for tenant {tenant_id}")
        return record

    async def search(self, query: ExecutionQuery, cursor: str | None = None) -> SearchPage:
        return await self.store.search(query, cursor)

    async def history(self, tenant_id: str, execution_id: str) -> list[Change]:
        await self.status(tenant_id, execution_id)
        if self.store.history is None:
            return []
        return await self.store.history.list(tenant_id, execution_id)

    async def result(self, tenant_id: str, execution_id: str) -> ExecutionResult:
        record = await self.status(tenant_id, execution_id)
        if record.result is None:
            return ExecutionResult(record, None, None)
        data = await self.payloads.get(tenant_id, execution_id, record.result)
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        return ExecutionResult(record, json.loads(data), contract.output.type_id)
