from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from examples.orders import OrderConfirmation, orders
from tpf.errors import Retryable
from tpf.payloads import PayloadRef, PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.pipeline import Awaited, Pipeline, StepContext, type_id
from tpf.runtime import InvocationRuntime
from tpf.wire import Payload, TransitionCommand, TransitionResult, WorkerIdentity
from worker.transition import run_transition
from worker.values import MESSAGE_INLINE_LIMIT

WORKER = WorkerIdentity(worker_id="w-1", release_version="1.0.0")
ORDER = {"orderId": "o-1", "amountCents": 1000, "customer": "Ada"}


class File(BaseModel):
    name: str
    rows: int


class Row(BaseModel):
    n: int


class Ask(BaseModel):
    n: int


class Verdict(BaseModel):
    ok: bool


class Report(BaseModel):
    total: int
    approved: int


class Blob(BaseModel):
    text: str


def command(
    pipeline: Pipeline,
    start: int,
    value: Any = None,
    *,
    stop: int | None = None,
    attempt: int = 1,
    generation: int = 0,
    payload: Payload | None = None,
) -> TransitionCommand:
    return TransitionCommand(
        tenant_id="t-1",
        execution_id="e-1",
        pipeline_id=pipeline.id,
        contract_version="sha256:test",
        release_version="1.0.0",
        current_step_index=start,
        stop_before_step_index=pipeline.next_boundary(start) if stop is None else stop,
        attempt=attempt,
        execution_version=3,
        transition_key=f"e-1:{start}:{attempt}",
        redrive_generation=generation,
        trace_id="trace-1",
        deadline_epoch_ms=0,
        input=payload or Payload(payload_type_id="input", payload=json.dumps(value)),
    )


@pytest.fixture
def payloads() -> PayloadStore:
    return PayloadStore(InMemoryPayloadBackend())


async def run(
    pipeline: Pipeline, cmd: TransitionCommand, payloads: PayloadStore
) -> TransitionResult:
    return await run_transition(
        pipeline, cmd, payloads=payloads, runtime=InvocationRuntime(), worker=WORKER
    )


async def document(payload: Payload | None, payloads: PayloadStore) -> Any:
    assert payload is not None
    if payload.payload_ref is not None:
        ref = PayloadRef(tier=payload.payload_ref.tier, digest=payload.payload_ref.digest)
        return json.loads(await payloads.get("t-1", "e-1", ref))
    assert payload.payload is not None
    return json.loads(payload.payload)


# -- pipelines -----------------------------------------------------------------------------------

contexts: list[StepContext] = []


def checkpointed() -> Pipeline:
    p = Pipeline("org.example.checkpointed", input=Row)

    @p.step(checkpoint=True)
    def double(row: Row) -> Row:
        return Row(n=row.n * 2)

    @p.step()
    def increment(row: Row) -> Row:
        return Row(n=row.n + 1)

    return p


def approval() -> Pipeline:
    p = Pipeline("org.example.approval", input=Row)

    @p.step()
    def prepare(row: Row) -> Ask:
        return Ask(n=row.n)

    @p.await_(id="AwaitDecision", response=Verdict, transport="sqs", timeout=timedelta(minutes=5))
    def ask(request: Ask) -> Ask:
        return request

    @p.step()
    def settle(answer: Awaited[Ask, Verdict]) -> Report:
        return Report(total=answer.request.n, approved=int(answer.response.ok))

    return p


def payments() -> Pipeline:
    """expand → per-item step → itemized await | collect."""
    p = Pipeline("org.example.payments", input=File)

    @p.expand()
    def rows(f: File) -> list[Row]:
        return [Row(n=i) for i in range(f.rows)]

    @p.step()
    def prepare(row: Row, ctx: StepContext) -> Ask:
        contexts.append(ctx)
        if row.n == 99:
            raise ZeroDivisionError("row 99")
        return Ask(n=row.n * 10)

    @p.await_(id="AwaitProvider", response=Verdict)
    def ask(request: Ask) -> Ask:
        return request

    @p.collect()
    def publish(answers: list[Awaited[Ask, Verdict]]) -> Report:
        approved = sum(1 for a in answers if a.response.ok)
        return Report(total=sum(a.request.n for a in answers), approved=approved)

    return p


def batch() -> Pipeline:
    """expand (checkpoint) | per-item step → collect."""
    p = Pipeline("org.example.batch", input=File)

    @p.expand(checkpoint=True)
    def rows(f: File) -> list[Row]:
        return [Row(n=i) for i in range(f.rows)]

    @p.step()
    def double(row: Row) -> Row:
        return Row(n=row.n * 2)

    @p.collect()
    def total(rows: list[Row]) -> Report:
        return Report(total=sum(r.n for r in rows), approved=len(rows))

    return p


def failing(exc: Exception) -> Pipeline:
    p = Pipeline("org.example.failing", input=Row)

    @p.step()
    def fail(row: Row) -> Row:
        raise exc

    return p


def big() -> Pipeline:
    p = Pipeline("org.example.big", input=Row)

    @p.step(checkpoint=True)
    def inflate(row: Row) -> Blob:
        return Blob(text='"quoted" ' * row.n)

    @p.step()
    def measure(blob: Blob) -> Row:
        return Row(n=len(blob.text))

    return p


@pytest.fixture(autouse=True)
def _clear_contexts() -> None:
    contexts.clear()


# -- outcomes ------------------------------------------------------------------------------------


async def test_the_orders_pipeline_runs_to_the_end_and_returns_its_result(
    payloads: PayloadStore,
) -> None:
    result = await run(orders, command(orders, 0, ORDER), payloads)
    assert result.outcome == "COMPLETED"
    assert result.next_step_index == 3
    assert result.output is not None
    assert result.output.payload_type_id == type_id(OrderConfirmation)
    assert await document(result.output, payloads) == {
        "orderId": "o-1",
        "totalCents": 1200,
        "summary": "order o-1 for Ada: 12.00 confirmed",
    }
    assert (result.transition_key, result.execution_version, result.worker) == (
        "e-1:0:1",
        3,
        WORKER,
    )


async def test_a_transition_stops_at_a_checkpoint_with_the_next_steps_input(
    payloads: PayloadStore,
) -> None:
    p = checkpointed()
    first = await run(p, command(p, 0, {"n": 5}), payloads)
    assert (first.outcome, first.next_step_index) == ("COMPLETED", 1)
    assert first.output is not None
    assert await document(first.output, payloads) == {"n": 10}
    second = await run(p, command(p, 1, payload=first.output), payloads)
    assert (second.outcome, second.next_step_index) == ("COMPLETED", 2)
    assert await document(second.output, payloads) == {"n": 11}


async def test_an_await_step_suspends_with_its_request_and_resumes_with_the_response(
    payloads: PayloadStore,
) -> None:
    p = approval()
    parked = await run(p, command(p, 0, {"n": 4}), payloads)
    assert (parked.outcome, parked.next_step_index, parked.output) == ("WAITING_EXTERNAL", 2, None)
    suspension = parked.suspension
    assert suspension is not None
    assert (suspension.step_id, suspension.step_index) == ("AwaitDecision", 1)
    assert (suspension.transport, suspension.timeout_ms, suspension.continuation) == (
        "sqs",
        300_000,
        None,
    )
    assert suspension.requests.payload_type_id == f"list[{type_id(Ask)}]"
    assert await document(suspension.requests, payloads) == [{"n": 4}]

    resumed_input = {"request": {"n": 4}, "response": {"ok": True}}
    resumed = await run(p, command(p, 2, resumed_input), payloads)
    assert (resumed.outcome, resumed.next_step_index) == ("COMPLETED", 3)
    assert await document(resumed.output, payloads) == {"total": 4, "approved": 1}


async def test_an_expansion_runs_per_item_steps_and_an_itemized_await_asks_once_per_item(
    payloads: PayloadStore,
) -> None:
    p = payments()
    parked = await run(p, command(p, 0, {"name": "f.csv", "rows": 3}, generation=2), payloads)
    assert parked.outcome == "WAITING_EXTERNAL"
    assert parked.suspension is not None
    assert await document(parked.suspension.requests, payloads) == [{"n": 0}, {"n": 10}, {"n": 20}]
    by_item = sorted(contexts, key=lambda c: c.item_index or 0)
    assert [c.item_index for c in by_item] == [0, 1, 2]
    assert [c.idempotency_key for c in by_item] == [f"t-1:e-1:1:g2:i{i}" for i in range(3)]
    assert {(c.attempt, c.transition_key, c.step_id) for c in by_item} == {
        (1, "e-1:0:1", "prepare")
    }

    answers = [{"request": {"n": n}, "response": {"ok": n != 10}} for n in (0, 10, 20)]
    collected = await run(p, command(p, 3, answers), payloads)
    assert (collected.outcome, collected.next_step_index) == ("COMPLETED", 4)
    assert await document(collected.output, payloads) == {"total": 30, "approved": 2}


async def test_a_checkpoint_inside_an_expansion_hands_on_the_list_of_items(
    payloads: PayloadStore,
) -> None:
    p = batch()
    first = await run(p, command(p, 0, {"name": "f.csv", "rows": 3}), payloads)
    assert (first.outcome, first.next_step_index) == ("COMPLETED", 1)
    assert first.output is not None
    assert first.output.payload_type_id == f"list[{type_id(Row)}]"
    assert await document(first.output, payloads) == [{"n": 0}, {"n": 1}, {"n": 2}]

    second = await run(p, command(p, 1, payload=first.output), payloads)
    assert (second.outcome, second.next_step_index) == ("COMPLETED", 3)
    assert await document(second.output, payloads) == {"total": 6, "approved": 3}


async def test_a_range_that_runs_past_an_await_is_refused_as_a_protocol_error(
    payloads: PayloadStore,
) -> None:
    p = approval()
    result = await run(p, command(p, 0, {"n": 1}, stop=3), payloads)
    assert result.outcome == "FAILED"
    assert result.failure is not None
    assert (result.failure.category, result.failure.error_code, result.failure.retryable) == (
        "protocol",
        "BAD_TRANSITION_RANGE",
        False,
    )
    assert "AwaitDecision" in result.failure.message


# -- failures ------------------------------------------------------------------------------------


async def test_the_flaky_price_step_fails_retryably_on_attempt_one_and_succeeds_on_two(
    payloads: PayloadStore,
) -> None:
    flaky = {**ORDER, "flaky": True}
    first = await run(orders, command(orders, 0, flaky, attempt=1), payloads)
    assert first.outcome == "FAILED"
    assert first.failure is not None
    assert first.failure.model_dump() == {
        "category": "unexpected",
        "error_code": "STEP_FAILED",
        "message": "pricing service unavailable (demo: first attempt only)",
        "retryable": True,
        "retry_after_ms": None,
        "step_index": 1,
    }
    second = await run(orders, command(orders, 0, flaky, attempt=2), payloads)
    assert second.outcome == "COMPLETED"


async def test_a_retryable_failure_carries_its_code_and_retry_after(
    payloads: PayloadStore,
) -> None:
    p = failing(
        Retryable("slow down", error_code="RATE_LIMITED", retry_after=timedelta(seconds=30))
    )
    result = await run(p, command(p, 0, {"n": 1}), payloads)
    assert result.failure is not None
    assert (result.failure.error_code, result.failure.retryable) == ("RATE_LIMITED", True)
    assert (result.failure.retry_after_ms, result.failure.step_index) == (30_000, 0)


async def test_a_non_retryable_failure_is_reported_as_not_retryable(
    payloads: PayloadStore,
) -> None:
    result = await run(orders, command(orders, 0, {**ORDER, "customer": "  "}), payloads)
    assert result.failure is not None
    assert (result.failure.error_code, result.failure.retryable) == ("INVALID_ORDER", False)
    assert result.failure.step_index == 0


async def test_an_unexpected_exception_is_category_unexpected_retryable_and_names_the_error(
    payloads: PayloadStore,
) -> None:
    p = failing(KeyError("missing"))
    result = await run(p, command(p, 0, {"n": 1}), payloads)
    assert result.failure is not None
    assert result.failure.model_dump() == {
        "category": "unexpected",
        "error_code": "UNEXPECTED",
        "message": "KeyError: 'missing'",
        "retryable": True,
        "retry_after_ms": None,
        "step_index": 0,
    }


async def test_a_failing_item_fails_the_transition_and_is_named_in_the_message(
    payloads: PayloadStore,
) -> None:
    p = payments()
    result = await run(p, command(p, 0, {"name": "f.csv", "rows": 100}), payloads)
    assert result.outcome == "FAILED"
    assert result.failure is not None
    assert result.failure.message == "item 99: ZeroDivisionError: row 99"
    assert result.failure.step_index == 1


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({**ORDER, "amountCents": -1}),
        json.dumps({"orderId": "o-1"}),
        "{not json",
    ],
    ids=["invalid field", "missing fields", "not json"],
)
async def test_an_input_that_does_not_validate_fails_as_malformed_and_is_not_retried(
    payloads: PayloadStore, raw: str
) -> None:
    cmd = command(orders, 0, payload=Payload(payload_type_id="OrderIn", payload=raw))
    result = await run(orders, cmd, payloads)
    assert result.outcome == "FAILED"
    assert result.failure is not None
    assert (result.failure.category, result.failure.error_code) == ("malformed", "MALFORMED_INPUT")
    assert (result.failure.retryable, result.failure.step_index) == (False, 0)


async def test_an_input_in_the_tpf_map_envelope_form_is_accepted(payloads: PayloadStore) -> None:
    envelope = {
        "items": {k: {"payloadTypeId": "x", "payload": json.dumps(v)} for k, v in ORDER.items()}
    }
    cmd = command(
        orders, 0, payload=Payload(payload_type_id="java.util.Map", payload=json.dumps(envelope))
    )
    assert (await run(orders, cmd, payloads)).outcome == "COMPLETED"


# -- claim checks --------------------------------------------------------------------------------


async def test_a_large_output_goes_by_claim_check_and_the_next_transition_reads_it_back(
    payloads: PayloadStore,
) -> None:
    p = big()
    repeats = MESSAGE_INLINE_LIMIT // len('"quoted" ')  # escaping makes it larger than the limit
    first = await run(p, command(p, 0, {"n": repeats}), payloads)
    assert first.output is not None
    assert first.output.payload is None
    ref = first.output.payload_ref
    assert ref is not None
    assert ref.tier == "s3"
    assert (ref.size or 0) > MESSAGE_INLINE_LIMIT // 2
    assert (await document(first.output, payloads))["text"].startswith('"quoted" ')
    assert len(first.to_json()) < 64 * 1024

    second = await run(p, command(p, 1, payload=first.output), payloads)
    assert await document(second.output, payloads) == {"n": repeats * len('"quoted" ')}


async def test_a_missing_claim_checked_input_is_a_retryable_failure(
    payloads: PayloadStore,
) -> None:
    ref = {"tier": "s3", "digest": "nope", "size": 100_000}
    cmd = command(
        orders, 0, payload=Payload.model_validate({"payloadTypeId": "x", "payloadRef": ref})
    )
    result = await run(orders, cmd, payloads)
    assert result.failure is not None
    assert (result.failure.error_code, result.failure.retryable) == ("PAYLOAD_MISSING", True)
