"""Await latency and queue depth: ``tpf_await_seconds`` as the in-memory coordinator closes
units, and ``tpf_queue_depth`` as the sampler reads in-memory queues."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from coordinator.awaits.model import Interaction
from coordinator.depth import QueueDepth, QueueDepthSampler
from coordinator.testing import InMemoryCoordinator
from examples.restaurant_approval import AWAIT_STEP, restaurant_approval
from tests.unit.test_awaits import accepted, drive, parked
from tpf.queues import InMemoryQueue, Outgoing

WAIT_S = 5.0


@pytest.fixture
async def c() -> InMemoryCoordinator:
    coordinator = InMemoryCoordinator.create()
    await coordinator.register(restaurant_approval)
    return coordinator


def awaited(outcome: str, transport: str) -> tuple[float, float]:
    """(count, sum) of ``tpf_await_seconds`` for the restaurant's await step."""
    labels = {
        "pipeline": restaurant_approval.id,
        "step": AWAIT_STEP,
        "transport": transport,
        "outcome": outcome,
    }
    count = REGISTRY.get_sample_value("tpf_await_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("tpf_await_seconds_sum", labels) or 0.0
    return count, total


async def transport_of(c: InMemoryCoordinator, interaction: Interaction) -> str:
    unit = await c.await_table.get_unit(interaction.tenant_id, interaction.unit_id)
    assert unit is not None
    return unit.transport


async def test_a_completed_await_is_timed_once_with_its_pipeline_step_and_transport(
    c: InMemoryCoordinator,
) -> None:
    _, parked_at = await parked(c, key="completed")
    interaction: Interaction = parked_at["interaction"]
    transport = await transport_of(c, interaction)
    count, total = awaited("completed", transport)

    await c.awaits.complete(
        "acme",
        response=accepted(parked_at["request"]["orderId"]),
        interaction_id=interaction.interaction_id,
    )
    await drive(c)
    again = await c.awaits.complete(
        "acme",
        response=accepted(parked_at["request"]["orderId"]),
        interaction_id=interaction.interaction_id,
    )
    assert again.duplicate
    await c.sweep(interaction.deadline_ms + 1)  # nothing left open to close

    after_count, after_total = awaited("completed", transport)
    assert after_count == count + 1
    assert 0.0 <= after_total - total < 60.0


async def test_an_unanswered_await_is_timed_to_the_sweep_that_timed_it_out(
    c: InMemoryCoordinator,
) -> None:
    _, parked_at = await parked(c, key="timed-out")
    interaction: Interaction = parked_at["interaction"]
    transport = await transport_of(c, interaction)
    count, total = awaited("timed_out", transport)

    assert await c.sweep(interaction.deadline_ms + 1) == 1

    after_count, after_total = awaited("timed_out", transport)
    assert after_count == count + 1
    expected = (interaction.deadline_ms + 1 - interaction.created_at_ms) / 1000
    assert after_total - total == pytest.approx(expected)


async def test_an_await_of_a_cancelled_execution_is_abandoned_as_of_the_cancel(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c, key="cancelled")
    interaction: Interaction = parked_at["interaction"]
    transport = await transport_of(c, interaction)
    abandoned, abandoned_total = awaited("abandoned", transport)
    timed_out, _ = awaited("timed_out", transport)

    cancelled_at = interaction.created_at_ms + 5_000
    await c.operations.cancel("acme", execution_id, actor="ops", now_ms=cancelled_at, reason="test")
    # The cancel closes the unit, so the inbox stops listing it; the sweeper finds nothing.
    assert await c.awaits.pending("acme") == []
    assert await c.sweep(interaction.deadline_ms + 1) == 0

    after, after_total = awaited("abandoned", transport)
    assert after == abandoned + 1
    assert after_total - abandoned_total == pytest.approx(5.0)
    assert awaited("timed_out", transport)[0] == timed_out


def depth(queue: str, state: str) -> float | None:
    return REGISTRY.get_sample_value("tpf_queue_depth", {"queue": queue, "state": state})


class BacklogOnly:
    """A queue that can only say how many messages wait (no ``depth()``)."""

    def __init__(self, waiting: int) -> None:
        self.name, self.waiting = "backlog-only", waiting

    async def backlog(self) -> int:
        return self.waiting


async def test_the_sampler_sets_every_state_of_each_queue() -> None:
    work, results = InMemoryQueue("work"), InMemoryQueue("results")
    await work.send_many([Outgoing("a"), Outgoing("b"), Outgoing("later", delay_s=60)])
    await results.send(Outgoing("r"))
    await results.receive(wait_s=0)
    sampler = QueueDepthSampler({"sampled-work": work, "sampled-results": results})

    read = await sampler.sample_once()

    assert read == {
        "sampled-work": QueueDepth(2, in_flight=0, delayed=1),
        "sampled-results": QueueDepth(0, in_flight=1, delayed=0),
    }
    states = ("visible", "in_flight", "delayed")
    assert [depth("sampled-work", s) for s in states] == [2, 0, 1]
    assert [depth("sampled-results", s) for s in states] == [0, 1, 0]


async def test_a_queue_that_only_knows_its_backlog_reports_visible_alone() -> None:
    await QueueDepthSampler({"backlog-only": BacklogOnly(3)}).sample_once()  # type: ignore[dict-item]

    assert depth("backlog-only", "visible") == 3
    # backlog() says nothing of these: absent, not a false zero
    assert depth("backlog-only", "delayed") is None
    assert depth("backlog-only", "in_flight") is None


class Unreadable(InMemoryQueue):
    """A queue whose attributes cannot be read; it counts the attempts."""

    def __init__(self, name: str, *, fail_from: int) -> None:
        super().__init__(name)
        self.fail_from = fail_from
        self.reads = 0
        self.read_again = asyncio.Event()

    async def depth(self) -> QueueDepth:
        self.reads += 1
        if self.reads > self.fail_from:
            self.read_again.set()
            raise ConnectionError("queue attributes unavailable")
        return await super().depth()


async def test_a_failing_queue_keeps_its_last_depth_and_stops_neither_the_others_nor_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    healthy, failing = InMemoryQueue("healthy"), Unreadable("failing", fail_from=1)
    await failing.send(Outgoing("x"))
    sampler = QueueDepthSampler({"healthy": healthy, "failing": failing}, interval_s=0.01)
    assert await sampler.sample_once() == {
        "healthy": QueueDepth(0, 0, 0),
        "failing": QueueDepth(1, 0, 0),
    }

    await healthy.send_many([Outgoing("a"), Outgoing("b")])
    await failing.send(Outgoing("y"))
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="tpf.coordinator"):
        running = asyncio.create_task(sampler.run(stop))
        # Two failed rounds: the loop came back after the first.
        failing.read_again.clear()
        await asyncio.wait_for(failing.read_again.wait(), timeout=WAIT_S)
        failing.read_again.clear()
        await asyncio.wait_for(failing.read_again.wait(), timeout=WAIT_S)
        stop.set()
        await asyncio.wait_for(running, timeout=WAIT_S)

    assert depth("healthy", "visible") == 2
    assert depth("failing", "visible") == 1  # the last reading, not the unreadable present
    assert any(getattr(r, "queue", None) == "failing" for r in caplog.records)


def test_a_sampler_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError):
        QueueDepthSampler({}, interval_s=0)


async def test_every_transition_sent_to_a_worker_is_counted_dispatched(
    c: InMemoryCoordinator,
) -> None:
    def dispatched() -> float:
        value = REGISTRY.get_sample_value("tpf_transitions_dispatched_total", {"channel": "queue"})
        return value or 0.0

    before = dispatched()
    execution_id, pending = await parked(c, "dispatch-count")  # validate+create, then the await
    assert dispatched() - before == 1
    interaction = pending["interaction"]
    await c.awaits.complete(
        "acme",
        response=accepted(pending["request"]["orderId"]),
        interaction_id=interaction.interaction_id,
    )
    await drive(c)
    assert dispatched() - before == 2  # resumed: the finalize transition
    assert (await c.service.status("acme", execution_id)).status.value == "SUCCEEDED"
