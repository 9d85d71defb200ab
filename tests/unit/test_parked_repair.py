"""A parked execution is due a grace after its await's deadline, so one whose await unit never
opened (or closed without it) is settled by the sweeper instead of waiting for its TTL."""

from __future__ import annotations

import json

import pytest

from coordinator.awaits.model import UnitStatus
from coordinator.awaits.opening import MAX_REQUEST_BYTES
from coordinator.testing import InMemoryCoordinator
from coordinator.transitions import AwaitOpener
from examples.restaurant_approval import restaurant_approval
from tests.unit.drive import WORKER, commands
from tests.unit.test_awaits import ORDER, accepted, drive, parked
from tpf.clock import now_ms
from tpf.records import ExecutionRecord, Status
from tpf.runtime import InvocationRuntime
from tpf.wire import Suspension, TransitionResult
from worker.transition import run_transition


@pytest.fixture
async def c() -> InMemoryCoordinator:
    coordinator = InMemoryCoordinator.create()
    await coordinator.register(restaurant_approval)
    return coordinator


def restaurant_approval_timeout_ms() -> int:
    [policy] = [s.await_policy for s in restaurant_approval.steps if s.await_policy]
    return int(policy.timeout.total_seconds() * 1000)


def grace_ms(c: InMemoryCoordinator) -> int:
    return int(c.settings.timings.await_stall.total_seconds() * 1000)


class Outage:
    """An await opener that fails while the outage lasts, as when its table is unreachable."""

    def __init__(self, opener: AwaitOpener) -> None:
        self.opener, self.on = opener, True

    async def __call__(
        self, record: ExecutionRecord, suspension: Suspension, *, resume_step: int
    ) -> None:
        if self.on:
            raise ConnectionError("awaits table unreachable")
        await self.opener(record, suspension, resume_step=resume_step)


async def park_during_an_outage(
    c: InMemoryCoordinator, *, outage: bool = True
) -> tuple[str, int, TransitionResult | None]:
    """Submit an order and commit its park, on the wall clock, while opening fails; returns
    its id, when it parked and the result whose unit did not open."""
    assert c.committer.open_await is not None
    c.committer.open_await = Outage(c.committer.open_await)
    c.committer.open_await.on = outage
    submitted = await c.service.submit(
        tenant_id="acme",
        pipeline_id=restaurant_approval.id,
        value=ORDER,
        idempotency_key="k",
        now_ms=now_ms(),
    )
    at, refused = 0, None
    while found := await commands(c):
        for command in found:
            result = await run_transition(
                restaurant_approval,
                command,
                payloads=c.payloads,
                runtime=InvocationRuntime(),
                worker=WORKER,
            )
            at = now_ms()
            try:
                await c.committer.commit(result, now_ms=at)
            except ConnectionError:  # its message would be delivered again, until its DLQ
                refused = result
    return submitted.record.execution_id, at, refused


async def approve_the_pending_order(c: InMemoryCoordinator) -> None:
    [pending] = await c.awaits.pending("acme")
    order_id = json.loads(pending.request)["orderId"]
    await c.awaits.complete(
        "acme", response=accepted(order_id), interaction_id=pending.interaction_id
    )
    await drive(c)


async def test_a_parked_execution_is_due_a_grace_after_its_await_deadline(
    c: InMemoryCoordinator,
) -> None:
    execution_id, at, _ = await park_during_an_outage(c, outage=False)
    record = await c.service.status("acme", execution_id)
    [interaction] = await c.awaits.pending("acme")
    assert record.status is Status.WAITING_EXTERNAL and record.due_at_ms is not None
    timeout_ms = record.due_at_ms - grace_ms(c) - at
    assert timeout_ms == restaurant_approval_timeout_ms()
    # The unit opened right after the park, so its deadline is at most a moment later.
    assert 0 <= interaction.deadline_ms - (at + timeout_ms) < 5_000


async def test_an_await_that_never_opened_is_dead_lettered_and_a_redrive_finishes_it(
    c: InMemoryCoordinator,
) -> None:
    execution_id, _, _ = await park_during_an_outage(c)
    record = await c.service.status("acme", execution_id)
    assert record.status is Status.WAITING_EXTERNAL and await c.awaits.pending("acme") == []
    assert record.due_at_ms is not None
    assert await c.sweeper.sweep_once(record.due_at_ms - 1) == 0  # not due yet: untouched

    assert await c.sweeper.sweep_once(record.due_at_ms) == 1
    ended = await c.service.status("acme", execution_id)
    assert (ended.status, ended.error_code) == (Status.DLQ, "AWAIT_NOT_OPENED")
    [letter] = await c.dead_letters.receive(wait_s=0)
    assert json.loads(letter.body)["errorCode"] == "AWAIT_NOT_OPENED"

    c.committer.open_await.on = False  # type: ignore[union-attr]  # the outage is over
    await c.operations.redrive("acme", execution_id, actor="ops", now_ms=now_ms())
    await drive(c)
    await approve_the_pending_order(c)
    assert (await c.service.status("acme", execution_id)).status is Status.SUCCEEDED


async def test_a_redelivered_park_result_opens_the_unit_after_an_outage(
    c: InMemoryCoordinator,
) -> None:
    execution_id, _, refused = await park_during_an_outage(c)
    c.committer.open_await.on = False  # type: ignore[union-attr]
    assert refused is not None
    assert await c.committer.commit(refused, now_ms=now_ms()) is None  # stale, but reopened
    await approve_the_pending_order(c)
    assert (await c.service.status("acme", execution_id)).status is Status.SUCCEEDED


async def test_a_parked_approval_watches_its_unit_deadline_itself(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    interaction = parked_at["interaction"]
    unit = await c.await_table.get_unit("acme", interaction.unit_id)
    assert unit is not None and unit.watched  # an inbox await of one interaction
    assert await c.awaits.sweep_once(unit.deadline_ms + 1) == 0  # in no await sweeper's list
    record = await c.service.status("acme", execution_id)
    # Parked with the wake time of the transition that parked it, a lower bound.
    assert record.wake_at_ms is not None and record.due_at_ms is not None
    assert record.wake_at_ms < record.due_at_ms

    assert await c.sweeper.sweep_once(record.wake_at_ms) == 0  # bookkeeping, not an action
    kept = await c.service.status("acme", execution_id)
    assert (kept.status, kept.version) == (Status.WAITING_EXTERNAL, record.version)
    assert kept.wake_at_ms == kept.due_at_ms == unit.deadline_ms
    assert await c.sweeper.sweep_once(unit.deadline_ms - 1) == 0
    assert await c.sweeper.sweep_once(unit.deadline_ms) == 1
    ended = await c.service.status("acme", execution_id)
    assert (ended.status, ended.error_code) == (Status.FAILED, "AWAIT_TIMEOUT")
    closed = await c.await_table.get_unit("acme", interaction.unit_id)
    assert closed is not None and closed.status is UnitStatus.TIMED_OUT


async def due_ids(c: InMemoryCoordinator, at: int) -> set[str]:
    shards = range(c.settings.due_shards)
    return {e.execution_id for s in shards for e in await c.store.due(str(s), now_ms=at)}


async def test_a_parked_execution_whose_unit_the_await_sweeper_watches_leaves_the_due_index(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    key = ("acme", parked_at["interaction"].unit_id)
    c.await_table.uncarry(*key, watched=False)  # as mains before 2026-12 opened it
    record = await c.service.status("acme", execution_id)
    assert record.wake_at_ms is not None and record.due_at_ms is not None
    assert execution_id in await due_ids(c, record.wake_at_ms)

    assert await c.sweeper.sweep_once(record.wake_at_ms) == 0
    kept = await c.service.status("acme", execution_id)
    assert (kept.version, kept.due_at_ms, kept.wake_at_ms) == (
        record.version,
        record.due_at_ms,
        None,
    )
    assert execution_id not in await due_ids(c, record.due_at_ms)
    # The unit's own entry in the await sweeper's list ends it.
    deadline = c.await_table.units[key].deadline_ms
    assert await c.awaits.sweep_once(deadline + 1) == 1
    ended = await c.service.status("acme", execution_id)
    assert (ended.status, ended.error_code) == (Status.FAILED, "AWAIT_TIMEOUT")


async def test_a_parked_execution_whose_unit_timed_out_without_it_fails(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    unit_id = parked_at["interaction"].unit_id
    unit = await c.await_table.get_unit("acme", unit_id)
    assert unit is not None
    await c.await_table.close_unit("acme", unit_id, UnitStatus.TIMED_OUT)  # record left behind
    record = await c.service.status("acme", execution_id)
    assert record.due_at_ms is not None
    assert await c.sweeper.sweep_once(record.due_at_ms) == 1
    ended = await c.service.status("acme", execution_id)
    assert (ended.status, ended.error_code) == (Status.FAILED, "AWAIT_TIMEOUT")


async def test_requests_too_large_to_open_dead_letter_the_execution_at_once(
    c: InMemoryCoordinator,
) -> None:
    big = {**ORDER, "customerName": "A" * (MAX_REQUEST_BYTES + 1)}
    submitted = await c.service.submit(
        tenant_id="acme",
        pipeline_id=restaurant_approval.id,
        value=big,
        idempotency_key="big",
        now_ms=now_ms(),
    )
    await drive(c)
    ended = await c.service.status("acme", submitted.record.execution_id)
    assert (ended.status, ended.error_code) == (Status.DLQ, "AWAIT_REQUEST_INVALID")
    assert f"at most {MAX_REQUEST_BYTES}" in (ended.error_message or "")
    assert await c.awaits.pending("acme") == []
    [letter] = await c.dead_letters.receive(wait_s=0)
    assert json.loads(letter.body)["errorCode"] == "AWAIT_REQUEST_INVALID"
