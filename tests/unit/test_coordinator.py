"""Coordinator logic over in-memory fakes: submit, dispatch, commit, retries, sweeps."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from coordinator.retries import decide
from coordinator.testing import InMemoryCoordinator
from examples.orders import orders
from tests.unit.drive import ORDER, WORKER, checkpointed, commands, completed, failed, submit
from tpf.contract import ContractRetry
from tpf.errors import InvalidInput, NotFound
from tpf.records import Status
from tpf.wire import Heartbeat


async def test_submit_pins_the_active_release_and_dispatches_a_signed_command(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator)
    [command] = await commands(coordinator)
    record = await coordinator.service.status("acme", execution_id)
    # Submit and first dispatch are one write: RUNNING at version 0.
    assert record.status is Status.RUNNING and record.version == 0
    assert coordinator.table.writes == 1
    assert record.release_version == "1.0.0"
    assert command.transition_key == record.transition_key
    assert (command.current_step_index, command.stop_before_step_index) == (0, 3)
    assert json.loads(command.input.payload or "") == ORDER


async def test_a_duplicate_submission_sends_no_second_command(
    coordinator: InMemoryCoordinator,
) -> None:
    first = await submit(coordinator, key="same")
    second = await coordinator.service.submit(
        tenant_id="acme", pipeline_id=orders.id, value=ORDER, idempotency_key="same", now_ms=2_000
    )
    assert second.duplicate and second.record.execution_id == first
    assert len(await commands(coordinator)) == 1


async def test_an_input_that_breaks_the_schema_is_refused_with_its_pointer(
    coordinator: InMemoryCoordinator,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await submit(coordinator, value={"orderId": "o", "amountCents": "many", "customer": "x"})
    assert refused.value.pointer == "/amountCents"
    with pytest.raises(NotFound):
        await submit(coordinator, pipeline="org.example.nothing")


async def test_a_result_at_a_checkpoint_commits_and_dispatches_the_next_step_in_one_write(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    assert command.stop_before_step_index == 1
    writes = coordinator.table.writes
    await coordinator.committer.commit(completed(command, 1, {"n": 2}), now_ms=2_000)
    assert coordinator.table.writes - writes == 1
    [nxt] = await commands(coordinator)
    assert (nxt.current_step_index, nxt.stop_before_step_index) == (1, 2)
    assert json.loads(nxt.input.payload or "") == {"n": 2}
    await coordinator.committer.commit(completed(nxt, 2, {"n": 20}), now_ms=3_000)
    outcome = await coordinator.service.result("acme", execution_id)
    assert outcome.record.status is Status.SUCCEEDED and outcome.result == {"n": 20}


async def test_late_and_duplicate_results_are_rejected_without_a_write(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    assert await coordinator.committer.commit(completed(command, 1, {"n": 2}), now_ms=2_000)
    before = await coordinator.service.status("acme", execution_id)
    writes = coordinator.table.writes
    assert await coordinator.committer.commit(completed(command, 1, {"n": 2}), now_ms=2_001) is None
    assert coordinator.table.writes == writes
    assert await coordinator.service.status("acme", execution_id) == before


async def test_a_retryable_failure_schedules_the_next_attempt_with_its_own_key(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    await coordinator.committer.commit(failed(command), now_ms=2_000)
    record = await coordinator.service.status("acme", execution_id)
    assert record.status is Status.WAIT_RETRY and record.retries_used == 1
    [retry] = await commands(coordinator)
    assert retry.transition_key == f"{execution_id}:0:2" == record.transition_key
    # The retry's result commits although the record still says WAIT_RETRY.
    await coordinator.committer.commit(completed(retry, 1, {"n": 2}), now_ms=3_000)
    assert (await coordinator.service.status("acme", execution_id)).step_index == 1


async def test_exhausted_retries_end_in_dlq_and_publish_a_dead_letter(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    for _ in range(2):  # max_attempts=2
        [command] = await commands(coordinator)
        await coordinator.committer.commit(failed(command), now_ms=2_000)
    record = await coordinator.service.status("acme", execution_id)
    assert record.status is Status.DLQ and record.error_code == "BOOM"
    [letter] = await coordinator.dead_letters.receive(wait_s=0)
    envelope = json.loads(letter.body)
    assert (envelope["executionId"], envelope["status"]) == (execution_id, "DLQ")
    # TPF's DeadLetterEnvelope fields, beside ours.
    assert (envelope["terminalStatus"], envelope["terminalReason"]) == ("DLQ", "retry_exhausted")
    assert (envelope["retryable"], envelope["retriesObserved"]) == (True, record.attempt)
    assert envelope["correlationId"] == record.execution_key
    assert (envelope["resourceType"], envelope["resourceName"]) == (
        "tpf.orchestrator.execution",
        "OrchestratorService/Run",
    )


async def test_a_non_retryable_failure_ends_failed_at_once(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    await coordinator.committer.commit(failed(command, retryable=False), now_ms=2_000)
    assert (await coordinator.service.status("acme", execution_id)).status is Status.FAILED
    assert len(await coordinator.dead_letters.receive(wait_s=0)) == 1


async def test_the_sweeper_times_out_a_silent_transition_and_retries_it(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    assert await coordinator.sweeper.sweep_once(command.deadline_epoch_ms - 1) == 0
    assert await coordinator.sweeper.sweep_once(command.deadline_epoch_ms) == 1
    record = await coordinator.service.status("acme", execution_id)
    assert (record.status, record.error_code) == (Status.WAIT_RETRY, "TRANSITION_TIMEOUT")
    # The frozen worker wakes up and reports: its result is fenced off.
    assert await coordinator.committer.commit(completed(command, 1, {"n": 2}), now_ms=9_000) is None


async def test_heartbeats_keep_a_slow_transition_alive_and_their_absence_does_not(
    coordinator: InMemoryCoordinator,
) -> None:
    execution_id = await submit(coordinator, checkpointed.id, {"n": 1})
    [command] = await commands(coordinator)
    timeout_ms = int(coordinator.settings.timings.transition_timeout.total_seconds() * 1000)
    now = command.deadline_epoch_ms - 1_000
    for _ in range(5):  # a step that runs well past its first deadline, beating every second
        beat = Heartbeat(
            tenant_id="acme",
            execution_id=execution_id,
            transition_key=command.transition_key,
            execution_version=command.execution_version,
            worker=WORKER,
            sent_at_epoch_ms=now,
        )
        await coordinator.results.heartbeat(beat, now_ms=now)
        now += 1_000
        assert await coordinator.sweeper.sweep_once(now) == 0
    record = await coordinator.service.status("acme", execution_id)
    assert record.status is Status.RUNNING and record.version == command.execution_version
    assert record.due_at_ms == now - 1_000 + timeout_ms
    # Heartbeats move the deadline only; the sweeper, woken at the first one, moved the wake.
    assert record.wake_at_ms is not None
    assert command.deadline_epoch_ms < record.wake_at_ms <= record.due_at_ms
    # The worker falls silent: once the last extension runs out, the sweeper takes over.
    assert await coordinator.sweeper.sweep_once(record.due_at_ms - 1) == 0
    assert await coordinator.sweeper.sweep_once(record.due_at_ms) == 1
    record = await coordinator.service.status("acme", execution_id)
    assert (record.status, record.error_code) == (Status.WAIT_RETRY, "TRANSITION_TIMEOUT")


async def test_the_sweeper_dispatches_an_execution_whose_submitter_died(
    coordinator: InMemoryCoordinator,
) -> None:
    from tpf.payloads import PayloadRef
    from tpf.records import new_execution

    contract = await coordinator.registry.contract(
        checkpointed.id,
        (await coordinator.registry.active_release(checkpointed.id)).contract_version,  # type: ignore[union-attr]
    )
    orphan = new_execution(
        tenant_id="acme",
        pipeline_id=checkpointed.id,
        idempotency_key="orphan",
        contract_version=contract.version,
        release_version="1.0.0",
        input=PayloadRef.of_inline('{"n":1}'),
        now_ms=1_000,
        due_at_ms=5_000,
    )
    await coordinator.store.submit(orphan, now_ms=1_000)
    assert await coordinator.sweeper.sweep_once(4_999) == 0
    assert await coordinator.sweeper.sweep_once(5_000) == 1
    [command] = await commands(coordinator)
    assert command.execution_id == orphan.execution_id


def test_retry_delays_follow_the_policy_with_full_jitter() -> None:
    policy = ContractRetry(max_attempts=10, base_delay_ms=100, multiplier=2.0, cap_ms=1_000)
    rng = random.Random(7)
    for failures, ceiling in [(1, 0.1), (3, 0.4), (6, 1.0)]:
        delays = [
            decide(policy, failures=failures, retryable=True, rng=rng).delay.total_seconds()
            for _ in range(2_000)
        ]
        assert all(0 <= d <= ceiling for d in delays)
        mean = sum(delays) / len(delays)
        assert abs(mean - ceiling / 2) < ceiling * 0.05, (failures, mean)  # uniform on [0, cap]
    floor = decide(policy, failures=1, retryable=True, retry_after=timedelta(seconds=3), rng=rng)
    assert floor.delay == timedelta(seconds=3)
    assert decide(policy, failures=10, retryable=True).action == "dlq"
    assert decide(policy, failures=1, retryable=False).action == "fail"
