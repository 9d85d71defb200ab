from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError

from tpf.errors import InvalidInput, NonRetryable, Retryable
from tpf.pipeline import Pipeline, StepContext
from tpf.runtime import (
    InvocationRuntime,
    TransportTarget,
    categorize,
    current_transport,
    log_context,
    step_context,
    transition_command,
)
from tpf.signing import SignatureRejected
from tpf.wire import Failure, MalformedMessage, Payload, TransitionCommand, TransitionResult
from tpf.wire import WorkerIdentity as Identity


class Num(BaseModel):
    n: int


def pipeline(pipeline_id: str = "org.example.runtime") -> Pipeline:
    p = Pipeline(pipeline_id, input=Num)

    @p.step()
    def echo(value: Num, ctx: StepContext) -> Num:
        seen.append(step_context())
        return value

    @p.step()
    def boom(value: Num) -> Num:
        raise ZeroDivisionError("boom")

    return p


seen: list[StepContext | None] = []


def ctx(step_id: str = "echo", *, execution: str = "e-1", item: int | None = None) -> StepContext:
    return StepContext(
        tenant_id="t",
        execution_id=execution,
        pipeline_id="org.example.runtime",
        step_id=step_id,
        step_index=0,
        attempt=1,
        transition_key=f"{execution}:0:1",
        idempotency_key=f"t:{execution}:0",
        release_version="1.0.0",
        item_index=item,
    )


def command(pipeline_id: str = "org.example.runtime") -> TransitionCommand:
    return TransitionCommand(
        tenant_id="t",
        execution_id="e-9",
        pipeline_id=pipeline_id,
        contract_version="sha256:x",
        release_version="1.0.0",
        current_step_index=0,
        stop_before_step_index=1,
        attempt=1,
        execution_version=1,
        transition_key="e-9:0:1",
        trace_id="trace",
        deadline_epoch_ms=0,
        input=Payload(payload_type_id="Num", payload='{"n":1}'),
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def ticking(*times: float) -> Iterator[float]:
    yield from times


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    seen.clear()


# -- context -------------------------------------------------------------------------------------


async def test_a_step_sees_its_own_context_and_none_is_left_installed_afterwards() -> None:
    spec = pipeline().step(0)
    assert step_context() is None
    assert await InvocationRuntime().invoke_step(spec, Num(n=1), ctx()) == Num(n=1)
    assert seen == [ctx()]
    assert step_context() is None


async def test_a_nested_invocation_restores_the_outer_context_when_it_returns() -> None:
    spec = pipeline().step(0)
    runtime = InvocationRuntime()
    observed: list[StepContext | None] = []

    async def outer() -> None:
        observed.append(step_context())
        await runtime.invoke_step(spec, Num(n=2), ctx(execution="inner"))
        observed.append(step_context())

    outer_spec = replace(spec, fn=lambda value: outer(), wants_context=False)
    await runtime.invoke_step(outer_spec, Num(n=1), ctx(execution="outer"))
    assert [c.execution_id if c else None for c in observed] == ["outer", "outer"]
    assert [c.execution_id if c else None for c in seen] == ["inner"]
    assert step_context() is None


async def test_the_context_is_restored_when_a_step_raises() -> None:
    spec = pipeline().step(1)
    with pytest.raises(ZeroDivisionError):
        await InvocationRuntime().invoke_step(spec, Num(n=1), ctx("boom"))
    assert step_context() is None


async def test_the_context_is_restored_when_a_step_is_cancelled() -> None:
    started = asyncio.Event()
    p = Pipeline("org.example.cancel", input=Num)

    @p.step()
    async def forever(value: Num) -> Num:
        started.set()
        await asyncio.Event().wait()
        return value

    task = asyncio.create_task(InvocationRuntime().invoke_step(p.step(0), Num(n=1), ctx()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert step_context() is None
    assert (
        sample(
            "tpf_step_seconds_count",
            pipeline=ctx().pipeline_id,
            step="forever",
            category="cancelled",
        )
        == 1
    )


async def test_concurrent_items_each_see_their_own_context() -> None:
    spec = pipeline().step(0)
    runtime = InvocationRuntime()
    await asyncio.gather(*(runtime.invoke_step(spec, Num(n=i), ctx(item=i)) for i in range(5)))
    assert sorted(c.item_index or 0 for c in seen if c is not None) == [0, 1, 2, 3, 4]


async def test_a_transition_installs_its_command_for_steps_and_log_records() -> None:
    runtime = InvocationRuntime()
    fields: list[dict[str, object]] = []

    async def run() -> str:
        assert transition_command() == command()
        fields.append(log_context())
        await runtime.invoke_step(pipeline().step(0), Num(n=1), ctx())
        return "done"

    assert await runtime.invoke_transition(command(), run) == "done"
    assert transition_command() is None
    assert fields == [
        {
            "tenantId": "t",
            "executionId": "e-9",
            "pipelineId": "org.example.runtime",
            "transitionKey": "e-9:0:1",
        }
    ]
    assert log_context() == {}


async def test_a_transport_call_installs_its_target_and_keeps_the_step_context() -> None:
    runtime = InvocationRuntime()
    inside: list[tuple[TransportTarget | None, StepContext | None]] = []

    async def call() -> int:
        inside.append((current_transport.get(), step_context()))
        return 7

    async def step_body() -> int:
        return await runtime.invoke_transport("rest", "pricing", call)

    spec = replace(pipeline().step(0), fn=lambda value: step_body(), wants_context=False)
    assert await runtime.invoke_step(spec, Num(n=1), ctx()) == 7
    assert inside == [(TransportTarget("rest", "pricing"), ctx())]
    assert current_transport.get() is None


# -- categories ----------------------------------------------------------------------------------


def _validation_error() -> ValidationError:
    try:
        Num.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def _from(failure: Exception, cause: BaseException) -> Exception:
    failure.__cause__ = cause
    return failure


def _aws(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetItem")


_REQUEST = httpx.Request("GET", "http://pricing/")

CASES: list[tuple[BaseException | None, str]] = [
    (None, "none"),
    (TimeoutError(), "timeout"),
    (httpx.ReadTimeout("slow", request=_REQUEST), "timeout"),
    (PermissionError(), "auth"),
    (SignatureRejected("bad signature"), "auth"),
    (_aws("AccessDeniedException"), "auth"),
    (ConnectionRefusedError(), "unavailable"),
    (OSError("disk"), "unavailable"),
    (httpx.ConnectError("refused", request=_REQUEST), "unavailable"),
    (EndpointConnectionError(endpoint_url="http://sqs"), "unavailable"),
    (_aws("ThrottlingException"), "unavailable"),
    (_validation_error(), "malformed"),
    (InvalidInput("bad", pointer="/n"), "malformed"),
    (MalformedMessage("bad"), "malformed"),
    (json.JSONDecodeError("bad", "{", 0), "malformed"),
    (httpx.RemoteProtocolError("garbled", request=_REQUEST), "protocol"),
    (asyncio.CancelledError(), "cancelled"),
    (ZeroDivisionError(), "unexpected"),
    (_aws("ValidationException"), "unexpected"),
    (Retryable("pricing down"), "unexpected"),
    (NonRetryable("declined"), "unexpected"),
    (_from(Retryable("pricing down"), TimeoutError()), "timeout"),
    (ExceptionGroup("items", [PermissionError()]), "auth"),
]


@pytest.mark.parametrize(("exc", "category"), CASES, ids=[c for _, c in CASES])
def test_each_outcome_gets_exactly_one_category(exc: BaseException | None, category: str) -> None:
    assert categorize(exc) == category


def test_a_step_failure_may_name_its_own_category() -> None:
    failure = Retryable("provider said 503", retry_after=timedelta(seconds=1))
    failure.category = "unavailable"  # type: ignore[attr-defined]
    assert categorize(failure) == "unavailable"


# -- durations -----------------------------------------------------------------------------------


async def test_step_durations_are_recorded_under_the_outcome_category() -> None:
    p = pipeline("org.example.durations")
    runtime = InvocationRuntime(clock=ticking(10.0, 11.5, 20.0, 20.25).__next__)
    context = replace(ctx(), pipeline_id=p.id)
    await runtime.invoke_step(p.step(0), Num(n=1), context)
    with pytest.raises(ZeroDivisionError):
        await runtime.invoke_step(p.step(1), Num(n=1), context)
    assert sample("tpf_step_seconds_sum", pipeline=p.id, step="echo", category="none") == 1.5
    assert sample("tpf_step_seconds_sum", pipeline=p.id, step="boom", category="unexpected") == 0.25


async def test_a_failed_transition_is_recorded_under_its_failure_category() -> None:
    runtime = InvocationRuntime(role="test-role")
    failure = Failure(category="auth", error_code="X", message="x", retryable=False)
    result = TransitionResult(
        tenant_id="t",
        execution_id="e-9",
        transition_key="e-9:0:1",
        execution_version=1,
        outcome="FAILED",
        failure=failure,
        worker=Identity(worker_id="w", release_version="1.0.0"),
        duration_ms=1,
    )

    async def run() -> TransitionResult:
        return result

    pipeline_id = "org.example.transition-metrics"
    before = sample("tpf_transitions_total", role="test-role", outcome="FAILED")
    await runtime.invoke_transition(command(pipeline_id), run)
    assert sample("tpf_transition_seconds_count", pipeline=pipeline_id, category="auth") == 1
    assert sample("tpf_transitions_total", role="test-role", outcome="FAILED") == before + 1


async def test_a_failed_transport_call_is_recorded_under_its_category() -> None:
    async def call() -> None:
        raise httpx.ConnectError("refused", request=_REQUEST)

    with pytest.raises(httpx.ConnectError):
        await InvocationRuntime().invoke_transport("rest", "inventory", call)
    labels = {"protocol": "rest", "target": "inventory", "category": "unavailable"}
    assert sample("tpf_transport_seconds_count", **labels) == 1
