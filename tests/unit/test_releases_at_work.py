"""Releases at work: admission of submissions by worker health, the worker's start-up check of
its code against the registered release, and its presence reports and drain."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.retirement import ReleaseRetirement
from coordinator.service import NoHealthyWorker
from coordinator.testing import TEST_KEY, InMemoryCoordinator
from examples.greeting import v1, v2
from examples.orders import orders
from tests.unit import drive
from tests.unit.drive import ORDER
from tpf.contract import Contract
from tpf.errors import ConfigurationError, Conflict
from tpf.queues import InMemoryQueue
from tpf.records import Status
from tpf.registry import release_for
from tpf.registry.worker_items import worker_item_key
from tpf.settings import Settings
from tpf.signing import Signer
from tpf.wire import HostedPipeline, WorkerPresence, decode
from worker.presence import PresenceReporter
from worker.role import verify_release

NOW = 1_700_000_000_000


def presence(release: str = "1.0.0", state: str = "RUNNING") -> WorkerPresence:
    contract = Contract.from_pipeline(orders).version
    return WorkerPresence(
        worker_id="w-1",
        release_version=release,
        pipelines=[HostedPipeline(pipeline_id=orders.id, contract_version=contract)],
        state=state,  # type: ignore[arg-type]
        sent_at_epoch_ms=NOW,
    )


async def admitting() -> InMemoryCoordinator:
    c = InMemoryCoordinator.create(Settings(profile="test", due_shards=2))
    await c.register(orders)
    return c


async def submit(c: InMemoryCoordinator, now_ms: int) -> str:
    outcome = await c.service.submit(
        tenant_id="acme", pipeline_id=orders.id, value=ORDER, idempotency_key=None, now_ms=now_ms
    )
    return outcome.record.execution_id


async def test_a_submission_without_a_healthy_worker_of_the_release_is_refused() -> None:
    c = await admitting()
    with pytest.raises(NoHealthyWorker, match=r"release 1\.0\.0"):
        await submit(c, NOW)
    assert c.work.messages == {}


async def test_a_worker_presence_admits_submissions_until_it_goes_stale() -> None:
    c = await admitting()
    await c.workers.report(presence(), NOW)
    await submit(c, NOW + 1)
    stale = int(c.settings.timings.worker_stale.total_seconds() * 1000)
    with pytest.raises(NoHealthyWorker):
        await submit(c, NOW + stale + 2_000)


async def test_workers_of_another_release_or_draining_do_not_admit() -> None:
    c = await admitting()
    await c.workers.report(presence(release="2.0.0"), NOW)
    with pytest.raises(NoHealthyWorker):
        await submit(c, NOW)
    await c.workers.report(presence(state="DRAINING"), NOW)
    c.workers.invalidate()
    with pytest.raises(NoHealthyWorker):
        await submit(c, NOW)


async def test_configured_to_queue_and_wait_it_accepts_without_a_worker() -> None:
    c = InMemoryCoordinator.create(
        Settings(profile="test", due_shards=2, submit_without_worker=True)
    )
    await c.register(orders)
    await submit(c, NOW)
    assert len(c.work.messages) == 1


async def test_a_worker_refuses_to_start_when_its_code_is_not_the_registered_release() -> None:
    c = InMemoryCoordinator.create()
    await c.register(v1.pipeline, "1.0.0")
    [release] = await verify_release(c.registry, [v1.pipeline], "1.0.0")
    assert release.contract_version == Contract.from_pipeline(v1.pipeline).version

    with pytest.raises(ConfigurationError, match="refusing to start"):
        await verify_release(c.registry, [v2.pipeline], "1.0.0")
    with pytest.raises(ConfigurationError, match="not registered"):
        await verify_release(c.registry, [v1.pipeline], "2.0.0")


async def test_presence_is_reported_signed_until_a_drain_is_requested() -> None:
    results = InMemoryQueue("results")
    asked = asyncio.Event()

    async def drain_requested() -> bool:
        return asked.is_set()

    reporter = PresenceReporter(
        results=results,
        signer=Signer(TEST_KEY),
        presence=presence(),
        interval_s=0.01,
        ttl_ms=10_000,
        clock=lambda: NOW,
        drain_requested=drain_requested,
    )
    stop, drain = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(reporter.run(stop, drain))
    while len(results.messages) < 3:
        await asyncio.wait_for(results._arrived.wait(), timeout=5)
        results._arrived.clear()
    asked.set()
    await asyncio.wait_for(drain.wait(), timeout=5)
    await asyncio.wait_for(running, timeout=5)

    reports = [decode(m.body) for m in results.messages.values()]
    for report in reports:
        assert isinstance(report, WorkerPresence) and report.state == "RUNNING"
        Signer(TEST_KEY).verify(report, channel="results", now_ms=NOW)
    assert worker_item_key(orders.id, "w-1") == (f"pipeline#{orders.id}", "worker#w-1")


async def test_a_release_retires_only_when_inactive_and_nothing_pinned_to_it_may_run() -> None:
    c = InMemoryCoordinator.create()
    await c.register(orders, "1.0.0")
    retirement = ReleaseRetirement(registry=c.registry, store=c.store, work=c.work_queues)
    execution_id = await drive.submit(c)

    with pytest.raises(Conflict) as active:
        await retirement.retire(orders.id, "1.0.0")
    assert active.value.code == "RELEASE_ACTIVE"

    await c.registry.register_release(
        release_for(Contract.from_pipeline(orders), "2.0.0", now_ms=2)
    )
    await c.registry.activate(orders.id, "2.0.0", now_ms=3)
    with pytest.raises(Conflict) as pinned:
        await retirement.retire(orders.id, "1.0.0")
    assert pinned.value.code == "RELEASE_PINNED" and execution_id in str(pinned.value)

    [command] = await drive.commands(c)
    await c.committer.commit(drive.completed(command, 3, {"done": True}), now_ms=NOW)
    record = await c.store.get("acme", execution_id)
    assert record is not None and record.status is Status.SUCCEEDED

    await retirement.retire(orders.id, "1.0.0")
    assert "1.0.0" not in c.work_queues.queues
