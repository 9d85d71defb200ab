"""One transition: load the input, run steps ``[start, stop)``, report the outcome.

Pure of any queue, so the SQS poller, a Lambda handler and one-process mode run the same code.
It never raises for a step's failure: every outcome is a :class:`TransitionResult`.

The payload shape between transitions is described in :mod:`worker.values`.

Failures
--------
A :class:`~tpf.errors.StepFailure` keeps its own code and retryability. Any other exception is a
bug or an outage the step did not classify: ``UNEXPECTED`` and retryable, because a transient
cause is common and the coordinator's retry budget caps the cost of a deterministic one. The
category is a diagnostic label (``tpf.runtime.categorize``) and never decides a retry.

======================  ==========  =========  ==============================================
error code              category    retryable  when
======================  ==========  =========  ==============================================
(the step's own)        see below   its own    a step raised Retryable / NonRetryable
UNEXPECTED              categorize  yes        a step raised anything else
MALFORMED_INPUT         malformed   no         the input does not validate (or is not JSON)
PAYLOAD_MISSING         unavailable yes        a claim-checked input is not (yet) readable
PAYLOAD_CORRUPT         malformed   no         a claim-checked input fails its digest
INPUT_UNAVAILABLE       categorize  yes        the payload store failed while loading
OUTPUT_UNSTORED         categorize  yes        the payload store failed on a claim check
BAD_TRANSITION_RANGE    protocol    no         [start, stop) is not a transition of the code
======================  ==========  =========  ==============================================

A StepFailure's category is its ``category`` attribute if set, else its ``__cause__``'s, else
``unexpected``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from tpf.errors import StepFailure
from tpf.payloads import PayloadStore
from tpf.pipeline import Pipeline, StepContext, StepKind, StepSpec, idempotency_key, type_id
from tpf.runtime import InvocationRuntime, categorize_failure
from tpf.wire import (
    Failure,
    Payload,
    Suspension,
    TransitionCommand,
    TransitionResult,
    WorkerIdentity,
)
from worker.items import StepError, expanded, mapped, takes_stream, values
from worker.values import (
    InputRejected,
    cap,
    load_input,
    output_type_id,
    to_items_payload,
    to_payload,
)

ITEM_CONCURRENCY = 16
"""Items of one per-item step run at once; bounds fan-out against downstream services."""
_MS = timedelta(milliseconds=1)

Outcome = Literal["COMPLETED", "WAITING_EXTERNAL", "FAILED"]


@dataclass(frozen=True)
class _Reached:
    outcome: Outcome
    next_step_index: int | None = None
    output: Payload | None = None
    suspension: Suspension | None = None
    failure: Failure | None = None


async def run_transition(
    pipeline: Pipeline,
    command: TransitionCommand,
    *,
    payloads: PayloadStore,
    runtime: InvocationRuntime,
    worker: WorkerIdentity,
    now: Callable[[], float] = time.monotonic,
) -> TransitionResult:
    """Run ``command`` on ``pipeline`` through the runtime's transition seam."""
    started = now()

    async def body() -> TransitionResult:
        try:
            reached = await _advance(pipeline, command, payloads, runtime)
        except InputRejected as rejected:
            reached = _Reached("FAILED", failure=rejected.failure)
        return TransitionResult(
            tenant_id=command.tenant_id,
            execution_id=command.execution_id,
            transition_key=command.transition_key,
            execution_version=command.execution_version,
            outcome=reached.outcome,
            next_step_index=reached.next_step_index,
            output=reached.output,
            suspension=reached.suspension,
            failure=reached.failure,
            worker=worker,
            duration_ms=int((now() - started) * 1000),
        )

    return await runtime.invoke_transition(command, body)


async def _advance(
    pipeline: Pipeline,
    command: TransitionCommand,
    payloads: PayloadStore,
    runtime: InvocationRuntime,
) -> _Reached:
    start, stop = command.current_step_index, command.stop_before_step_index
    problem = _range_problem(pipeline, start, stop)
    if problem is not None:
        failure = Failure(
            category="protocol",
            error_code="BAD_TRANSITION_RANGE",
            message=problem,
            retryable=False,
            step_index=start,
        )
        return _Reached("FAILED", failure=failure)
    value = await load_input(pipeline.step(start), command, payloads)
    for index in range(start, stop):
        try:
            value = await _run_step(pipeline.step(index), value, command, runtime)
        except StepError as exc:
            return _Reached("FAILED", failure=failure_of(exc, step_index=exc.step_index))
        except InputRejected:
            raise
        except Exception as exc:
            return _Reached("FAILED", failure=failure_of(exc, step_index=index))
    last = pipeline.step(stop - 1)
    try:
        if last.kind is StepKind.AWAIT and last.await_policy is not None:
            list_id = f"list[{type_id(last.output_type)}]"
            requests = value if last.per_item else [value]
            suspension = Suspension(
                step_id=last.id,
                step_index=last.index,
                transport=last.await_policy.transport,
                timeout_ms=last.await_policy.timeout // _MS,
                requests=await to_items_payload(payloads, command, list_id, requests),
                reads_pages=True,
            )
            return _Reached("WAITING_EXTERNAL", next_step_index=stop, suspension=suspension)
        if last.per_item or last.kind is StepKind.EXPAND:  # a checkpoint in an expansion
            output = await to_items_payload(payloads, command, output_type_id(last), value)
        else:
            output = await to_payload(payloads, command, output_type_id(last), value)
    except StepError as exc:  # met while the items were drawn
        return _Reached("FAILED", failure=failure_of(exc, step_index=exc.step_index))
    except InputRejected:
        raise
    except Exception as exc:  # the claim check could not be stored
        failure = failure_of(exc, step_index=None, error_code="OUTPUT_UNSTORED")
        return _Reached("FAILED", failure=failure)
    return _Reached("COMPLETED", next_step_index=stop, output=output)


def _range_problem(pipeline: Pipeline, start: int, stop: int) -> str | None:
    """Why ``[start, stop)`` is not a transition of this pipeline (a contract mismatch), if so."""
    count = len(pipeline.steps)
    if not 0 <= start < stop <= count:
        return f"steps [{start}, {stop}) are not a range of {pipeline.id!r} ({count} steps)"
    if stop not in pipeline.boundaries():
        return f"step {stop} of {pipeline.id!r} is not a durable boundary"
    skipped = [s.id for s in pipeline.steps[start : stop - 1] if s.kind is StepKind.AWAIT]
    if skipped:
        return f"steps [{start}, {stop}) run past await step {skipped[0]!r}"
    return None


# -- steps -------------------------------------------------------------------------------------


async def _run_step(
    spec: StepSpec, value: Any, command: TransitionCommand, runtime: InvocationRuntime
) -> Any:
    """The value after ``spec``; items stay a lazy stream (:mod:`worker.items`)."""
    if spec.per_item:

        async def one(item_index: int, item: Any) -> Any:
            return await runtime.invoke_step(spec, item, _context(spec, command, item_index))

        return mapped(spec, value, one, ITEM_CONCURRENCY)
    if spec.kind is StepKind.COLLECT:
        items = values(value) if takes_stream(spec) else [v async for _, v in value]
        return await runtime.invoke_step(spec, items, _context(spec, command))
    result = await runtime.invoke_step(spec, value, _context(spec, command))
    if spec.kind is StepKind.EXPAND:
        return expanded(spec, result)
    return result


def _context(spec: StepSpec, command: TransitionCommand, item: int | None = None) -> StepContext:
    return StepContext(
        tenant_id=command.tenant_id,
        execution_id=command.execution_id,
        pipeline_id=command.pipeline_id,
        step_id=spec.id,
        step_index=spec.index,
        attempt=command.attempt,
        transition_key=command.transition_key,
        idempotency_key=idempotency_key(
            command.tenant_id,
            command.execution_id,
            spec.index,
            generation=command.redrive_generation,
            item=item,
        ),
        release_version=command.release_version,
        item_index=item,
    )


def failure_of(
    exc: Exception, *, step_index: int | None, error_code: str = "UNEXPECTED"
) -> Failure:
    """The Failure a step's exception reports; see the module docstring for the choices."""
    prefix = ""
    if isinstance(exc, StepError):
        if exc.item_index is not None:
            prefix = f"item {exc.item_index}: "
        exc = exc.error
    category = categorize_failure(exc)
    if isinstance(exc, StepFailure):
        return Failure(
            category=category,
            error_code=exc.error_code,
            message=cap(prefix + str(exc)),
            retryable=exc.retryable,
            retry_after_ms=exc.retry_after // _MS if exc.retry_after is not None else None,
            step_index=step_index,
        )
    return Failure(
        category=category,
        error_code=error_code,
        message=cap(f"{prefix}{type(exc).__name__}: {exc}"),
        retryable=True,
        step_index=step_index,
    )
