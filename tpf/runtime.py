"""The invocation runtime: one seam around every step, transition and transport call.

REFERENCE section 6. Three entry points share one model so they cannot drift apart: each
installs its context (``contextvars``, restored on the way out, also on errors and cancellation),
measures the call, and labels its outcome with exactly one category::

    timeout · auth · unavailable · malformed · protocol · cancelled · unexpected · none

``none`` is success. Categories are diagnostics for metrics and logs only: retries, dead letters,
deadlines and cardinality belong to their owners (the coordinator decides a retry from
``Failure.retryable``, never from a category).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import httpx
from pydantic import ValidationError

from tpf import metrics
from tpf.aws_errors import aws_category
from tpf.errors import InvalidInput, StepFailure
from tpf.payloads import PayloadCorrupt, PayloadMissing
from tpf.pipeline import StepContext, StepSpec, call_step
from tpf.signing import SignatureRejected
from tpf.wire import MalformedMessage, TransitionCommand, TransitionResult

T = TypeVar("T")

FailureCategory = Literal[
    "timeout", "auth", "unavailable", "malformed", "protocol", "cancelled", "unexpected"
]
Category = FailureCategory | Literal["none"]
FAILURE_CATEGORIES: frozenset[str] = frozenset(get_args(FailureCategory))


@dataclass(frozen=True)
class TransportTarget:
    protocol: str  # "rest", "sqs", ...
    target: str  # a service or queue name; diagnostic metadata only


current_step: ContextVar[StepContext | None] = ContextVar("tpf_current_step", default=None)
current_transition: ContextVar[TransitionCommand | None] = ContextVar(
    "tpf_current_transition", default=None
)
current_transport: ContextVar[TransportTarget | None] = ContextVar(
    "tpf_current_transport", default=None
)


def step_context() -> StepContext | None:
    """The step running in this task, for code deep inside a step that was not handed ``ctx``."""
    return current_step.get()


def transition_command() -> TransitionCommand | None:
    return current_transition.get()


def log_context() -> dict[str, Any]:
    """Fields a log formatter adds to every record: which execution, transition and step."""
    fields: dict[str, Any] = {}
    command = current_transition.get()
    if command is not None:
        fields.update(
            tenantId=command.tenant_id,
            executionId=command.execution_id,
            pipelineId=command.pipeline_id,
            transitionKey=command.transition_key,
        )
    step = current_step.get()
    if step is not None:
        fields.update(
            executionId=step.execution_id,
            transitionKey=step.transition_key,
            stepId=step.step_id,
            stepIndex=step.step_index,
        )
        if step.item_index is not None:
            fields["itemIndex"] = step.item_index
    return fields


# -- categories ----------------------------------------------------------------------------------


def categorize(exc: BaseException | None) -> Category:
    """The category of an outcome: ``none`` for success (no exception)."""
    return "none" if exc is None else categorize_failure(exc)


def categorize_failure(exc: BaseException) -> FailureCategory:
    """The one place that maps an exception to a category (httpx's ``map_exceptions`` habit).

    A :class:`StepFailure` is a business failure the step chose to report; it has no transport
    meaning of its own, so it takes a ``category`` attribute when a subclass or the step sets one,
    else the category of its cause (``raise Retryable(...) from exc``), else ``unexpected``.
    """
    if isinstance(exc, StepFailure):
        own = getattr(exc, "category", None)
        if isinstance(own, str) and own in FAILURE_CATEGORIES:
            return own  # type: ignore[return-value]
        cause = exc.__cause__
        return categorize_failure(cause) if cause is not None else "unexpected"
    if isinstance(exc, BaseExceptionGroup):
        return categorize_failure(exc.exceptions[0])
    # Order matters: TimeoutError, PermissionError and ConnectionError are all OSErrors.
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, PermissionError | SignatureRejected):
        return "auth"
    if isinstance(
        exc,
        ValidationError
        | InvalidInput
        | MalformedMessage
        | PayloadCorrupt
        | json.JSONDecodeError
        | UnicodeDecodeError,
    ):
        return "malformed"
    if isinstance(exc, ConnectionError | OSError | PayloadMissing):
        return "unavailable"
    return _third_party(exc)


def _third_party(exc: BaseException) -> FailureCategory:
    """httpx and AWS SDK errors."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ProtocolError | httpx.UnsupportedProtocol | httpx.DecodingError):
        return "protocol"
    if isinstance(exc, httpx.TransportError):
        return "unavailable"
    if isinstance(exc, httpx.HTTPStatusError):
        return _http_status(exc.response.status_code)
    return aws_category(exc) or "unexpected"


def _http_status(status: int) -> FailureCategory:
    if status in (401, 403):
        return "auth"
    if status in (408, 504):
        return "timeout"
    if status == 429 or status >= 500:
        return "unavailable"
    return "protocol"


# -- the runtime ---------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """Filled in as an invocation ends; ``unexpected`` until proven otherwise."""

    category: str = "unexpected"
    result: str = "ERROR"


class InvocationRuntime:
    """Internal, injected (not a static utility) so diagnostics can be configured per role."""

    def __init__(self, *, role: str = "worker", clock: Callable[[], float] = time.perf_counter):
        self.role = role
        self._clock = clock

    @contextlib.contextmanager
    def _invocation(
        self, var: ContextVar[Any], value: Any, record: Callable[[str, float], None]
    ) -> Iterator[_Outcome]:
        """What every entry point shares: install context, time, label, restore."""
        token = var.set(value)
        outcome, started = _Outcome(), self._clock()
        try:
            yield outcome
        except BaseException as exc:
            outcome.category = categorize(exc)
            raise
        finally:
            var.reset(token)
            record(outcome.category, self._clock() - started)

    async def invoke_step(self, spec: StepSpec, value: Any, ctx: StepContext) -> Any:
        """Run one step on one value (one item of a per-item step)."""

        def record(category: str, elapsed: float) -> None:
            metrics.STEP_SECONDS.labels(ctx.pipeline_id, spec.id, category).observe(elapsed)

        with self._invocation(current_step, ctx, record) as outcome:
            result = await call_step(spec, value, ctx)
            outcome.category = "none"
            return result

    async def invoke_transition(
        self, command: TransitionCommand, run: Callable[[], Awaitable[T]]
    ) -> T:
        """Run a whole transition; a FAILED result is labelled with its failure's category."""

        def record(category: str, elapsed: float) -> None:
            metrics.TRANSITION_SECONDS.labels(command.pipeline_id, category).observe(elapsed)
            if category == "cancelled":
                outcome.result = "CANCELLED"
            metrics.TRANSITIONS.labels(self.role, outcome.result).inc()

        with self._invocation(current_transition, command, record) as outcome:
            result = await run()
            if isinstance(result, TransitionResult):
                outcome.result = result.outcome
                outcome.category = result.failure.category if result.failure else "none"
            else:
                outcome.category, outcome.result = "none", "COMPLETED"
            return result

    async def invoke_transport(
        self, protocol: str, target: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Run one remote call (a REST step, a remote worker); step context stays installed."""

        def record(category: str, elapsed: float) -> None:
            metrics.TRANSPORT_SECONDS.labels(protocol, target, category).observe(elapsed)

        with self._invocation(
            current_transport, TransportTarget(protocol, target), record
        ) as outcome:
            result = await call()
            outcome.category = "none"
            return result
