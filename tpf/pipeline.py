"""The programming model: a pipeline is an ordered list of steps over pydantic models.

Each declaration is checked at once against the step before it, so a broken pipeline fails at
import time, naming the step, and never reaches a worker. The coordinator never imports this
code: it sees a pipeline only through its contract (``tpf.contract``), derived from the
:class:`StepSpec` tuple built here.

Transitions and boundaries
--------------------------
A transition runs steps ``[start, stop)``; ``stop`` is its *stopBeforeStepIndex*. Every number
:meth:`Pipeline.boundaries` returns is such a ``stop`` and, equally, the continuation index the
next transition starts from:

* an await step at index ``a`` gives ``a + 1``: the transition runs the await step's function
  (which builds the request shown to the outside world), then suspends; once the response is in,
  the next transition starts at ``a + 1`` with ``Awaited[request, response]`` (``AwaitedOnce``
  after an exclusive await);
* a checkpoint step at index ``c`` gives ``c + 1`` (the durable boundary is *after* the step);
* the end, ``len(steps)``.

A worker that reached ``stop`` reports ``WAITING_EXTERNAL`` exactly when ``steps[stop - 1]`` is
an await step, and ``COMPLETED`` otherwise.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import GenericAlias
from typing import Any, Generic, Literal, TypedDict, TypeVar, Unpack, overload

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tpf.errors import ContractError

F = TypeVar("F", bound=Callable[..., Any])
RequestT = TypeVar("RequestT", bound=BaseModel)
ResponseT = TypeVar("ResponseT", bound=BaseModel)


class StepKind(StrEnum):
    STEP = "step"
    EXPAND = "expand"
    AWAIT = "await"
    COLLECT = "collect"


class Cardinality(StrEnum):
    ONE_TO_ONE = "ONE_TO_ONE"
    ONE_TO_MANY = "ONE_TO_MANY"
    MANY_TO_ONE = "MANY_TO_ONE"


class RetryPolicy(BaseModel):
    """How often, and how far apart, the coordinator re-runs a failed transition."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=3, ge=1)
    base_delay: timedelta = Field(default=timedelta(seconds=1), ge=timedelta(0))
    multiplier: float = Field(default=2.0, ge=1.0)
    cap: timedelta = Field(default=timedelta(minutes=15), ge=timedelta(0))


class AwaitPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    transport: str = Field(default="interaction-api", min_length=1)
    """``interaction-api`` and ``sqs`` are built in; any name is allowed: transports plug in."""
    timeout: timedelta = timedelta(minutes=30)
    on_timeout: Literal["FAIL"] = "FAIL"
    idempotency_fields: tuple[str, ...] = ()
    """Fields of the await step's input forming the interaction key; empty: executionId:stepId."""
    exclusive: timedelta | None = Field(default=None, gt=timedelta(0))
    """Send each key once per tenant within this period: the first execution to send it owns
    it, and a later request with that key is answered as a duplicate without being sent."""


class Awaited(BaseModel, Generic[RequestT, ResponseT]):
    """What the step after an await receives: the request it published and the answer."""

    model_config = ConfigDict(frozen=True)

    request: RequestT
    response: ResponseT


class Owner(BaseModel):
    """The execution that sent an exclusive await's key first, and how its request stands."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    execution_id: str
    status: str
    """Of the owner's interaction: ``PENDING``, ``COMPLETED`` or ``TIMED_OUT``."""
    response: Any = None
    """The owner's answer once it has one (as the provider sent it)."""


class AwaitedOnce(BaseModel, Generic[RequestT, ResponseT]):
    """What the step after an exclusive await receives: the answer, or who sent the key first.

    Exactly one of ``response`` and ``duplicate_of`` is set.
    """

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    request: RequestT
    response: ResponseT | None = None
    duplicate_of: Owner | None = None


class StepOptions(TypedDict, total=False):
    id: str | None  # defaults to the function's name
    retry: RetryPolicy | None  # defaults to the pipeline's
    checkpoint: bool  # a durable boundary after this step


@dataclass(frozen=True)
class StepSpec:
    index: int
    id: str
    kind: StepKind
    cardinality: Cardinality
    fn: Callable[..., Any]
    input_type: Any  # a model class; list[Model] for a collect step
    output_type: Any  # a model class (an await's *request*); list[Model] for an expand step
    retry: RetryPolicy  # effective: the step's own, else the pipeline's
    await_policy: AwaitPolicy | None
    response_type: type[BaseModel] | None
    checkpoint: bool
    per_item: bool  # runs once per item of an open expansion
    itemized: bool  # an await inside an expansion: one interaction per item
    wants_context: bool


def idempotency_key(
    tenant_id: str,
    execution_id: str,
    step_index: int,
    *,
    generation: int = 0,
    item: int | None = None,
) -> str:
    """The key a step hands to side-effecting calls.

    It leaves out the attempt and the transition key on purpose: both change on every retry, yet a
    retry or an SQS redelivery re-runs the *same* logical step, so a payment made by attempt 1
    must be recognised by attempt 2. A re-drive is an operator asking for the step to run anew
    (it also opens a fresh await unit), so a non-zero generation is part of the key. Per-item
    runs add ``:i<k>`` so the items of one expansion do not share a key.
    """
    key = f"{tenant_id}:{execution_id}:{step_index}"
    if generation:
        key += f":g{generation}"
    if item is not None:
        key += f":i{item}"
    return key


@dataclass(frozen=True)
class StepContext:
    tenant_id: str
    execution_id: str
    pipeline_id: str
    step_id: str
    step_index: int
    attempt: int  # 1-based: the first run of a transition is attempt 1
    transition_key: str
    idempotency_key: str  # stable across redeliveries and retries; see idempotency_key()
    release_version: str
    item_index: int | None = None


async def call_step(spec: StepSpec, value: Any, ctx: StepContext) -> Any:
    """Run one step on one value. Sync steps run inline: a step owns its blocking choices."""
    result = spec.fn(value, ctx) if spec.wants_context else spec.fn(value)
    # Checking the result, not the function, also covers decorated coroutine functions.
    if inspect.isawaitable(result):
        result = await result
    return result


def type_id(tp: Any) -> str:
    """A stable label for a model type: ``module.qualname``, with type arguments spelled out."""
    if typing.get_origin(tp) is list:
        return f"list[{type_id(typing.get_args(tp)[0])}]"
    meta = getattr(tp, "__pydantic_generic_metadata__", None)
    if meta and meta["origin"] is not None:
        return f"{type_id(meta['origin'])}[{','.join(type_id(a) for a in meta['args'])}]"
    if isinstance(tp, type):
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp)


class Pipeline:
    def __init__(
        self, id: str, *, input: type[BaseModel], retry: RetryPolicy | None = None
    ) -> None:
        if not id:
            raise ContractError("a pipeline needs a non-empty id")
        if not _is_model(input):
            raise ContractError(f"pipeline {id!r}: input must be a pydantic model, got {input!r}")
        self.id = id
        self.input_type = input
        self.retry = retry or RetryPolicy()
        self._steps: list[StepSpec] = []
        self._current: Any = input  # the type the next step must accept
        self._expansion: StepSpec | None = None  # the expand step whose items are flowing

    # -- declaration -------------------------------------------------------------------------

    @overload
    def step(self, index: int, /) -> StepSpec: ...
    @overload
    def step(self, /, **options: Unpack[StepOptions]) -> Callable[[F], F]: ...

    def step(
        self, index: int | None = None, /, **options: Unpack[StepOptions]
    ) -> StepSpec | Callable[[F], F]:
        """``step(i)`` is the spec at index ``i``; ``@step(...)`` declares a one-to-one step
        (run once per item inside an expansion)."""
        if index is not None:
            return self._steps[index]
        return self._decorator(StepKind.STEP, options)

    def expand(self, **options: Unpack[StepOptions]) -> Callable[[F], F]:
        """A one-to-many step returning ``list[Item]``; the steps after it apply per item."""
        return self._decorator(StepKind.EXPAND, options)

    def collect(self, **options: Unpack[StepOptions]) -> Callable[[F], F]:
        """A many-to-one step receiving ``list[Item]`` of everything the expansion produced."""
        return self._decorator(StepKind.COLLECT, options)

    def await_(
        self,
        *,
        response: type[BaseModel],
        id: str | None = None,
        transport: str = "interaction-api",
        timeout: timedelta = timedelta(minutes=30),
        on_timeout: Literal["FAIL"] = "FAIL",
        idempotency_fields: tuple[str, ...] = (),
        exclusive: timedelta | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """A step whose function builds the request; the execution parks until a response.

        ``exclusive`` (with ``idempotency_fields``): see :attr:`AwaitPolicy.exclusive`; the next
        step then takes ``AwaitedOnce`` rather than ``Awaited``.
        """
        policy = AwaitPolicy(
            transport=transport,
            timeout=timeout,
            on_timeout=on_timeout,
            idempotency_fields=idempotency_fields,
            exclusive=exclusive,
        )
        return self._decorator(StepKind.AWAIT, StepOptions(id=id, retry=retry), policy, response)

    def _decorator(
        self,
        kind: StepKind,
        options: StepOptions,
        await_policy: AwaitPolicy | None = None,
        response: type[BaseModel] | None = None,
    ) -> Callable[[F], F]:
        # Models declared next to a pipeline inside a function live only in that frame, and
        # resolving postponed annotations needs them: frame 2 is whoever called step()/expand()/...
        localns = dict(sys._getframe(2).f_locals)

        def register(fn: F) -> F:
            step_id = options.get("id") or fn.__name__
            where = f"pipeline {self.id!r}, step {step_id!r}"
            if any(s.id == step_id for s in self._steps):
                raise ContractError(f"{where}: duplicate step id")
            in_type, out_type, wants_context = _signature(fn, where, localns)
            self._check_types(kind, in_type, out_type, where)
            if await_policy is not None:
                if not _is_model(response):
                    raise ContractError(f"{where}: response must be a pydantic model")
                _check_idempotency_fields(in_type, await_policy.idempotency_fields, where)
                if await_policy.exclusive and not await_policy.idempotency_fields:
                    raise ContractError(f"{where}: an exclusive await needs idempotency_fields")
            per_item = self._expansion is not None and kind is not StepKind.COLLECT
            spec = StepSpec(
                index=len(self._steps),
                id=step_id,
                kind=kind,
                cardinality=_CARDINALITY.get(kind, Cardinality.ONE_TO_ONE),
                fn=fn,
                input_type=in_type,
                output_type=out_type,
                retry=options.get("retry") or self.retry,
                await_policy=await_policy,
                response_type=response,
                checkpoint=options.get("checkpoint", False),
                per_item=per_item,
                itemized=per_item and kind is StepKind.AWAIT,
                wants_context=wants_context,
            )
            self._steps.append(spec)
            self._current = _value_after(spec)
            if kind is StepKind.EXPAND:
                self._expansion = spec
            elif kind is StepKind.COLLECT:
                self._expansion = None
            return fn

        return register

    def _check_types(self, kind: StepKind, in_type: Any, out_type: Any, where: str) -> None:
        expected: Any = self._current
        if kind is StepKind.COLLECT:
            if self._expansion is None:
                raise ContractError(f"{where}: collect without an open expansion")
            expected = GenericAlias(list, (self._current,))
        elif not _is_model(in_type):
            raise ContractError(f"{where}: input must be a pydantic model, got {in_type!r}")
        # Pydantic caches generic parametrizations weakly, so Awaited[A, B] may be rebuilt:
        # compare labels, which spell out origin and arguments, rather than identity.
        if in_type is not expected and type_id(in_type) != type_id(expected):
            prev = f"step {self._steps[-1].id!r}" if self._steps else "the pipeline input"
            raise ContractError(
                f"{where}: takes {type_id(in_type)} but {prev} produces {type_id(expected)}"
            )
        if kind is StepKind.EXPAND:
            if self._expansion is not None:
                raise ContractError(
                    f"{where}: nested expansion (step {self._expansion.id!r} is still open)"
                )
            if _list_item(out_type) is None:
                raise ContractError(f"{where}: an expand step must return list[Model]")
        elif not _is_model(out_type):
            raise ContractError(f"{where}: output must be a pydantic model, got {out_type!r}")

    # -- queries -----------------------------------------------------------------------------

    @property
    def steps(self) -> tuple[StepSpec, ...]:
        return tuple(self._steps)

    @property
    def output_type(self) -> Any:
        """What the last step hands on (``Awaited[...]`` if the pipeline ends in an await)."""
        self.check()
        return self._current

    def check(self) -> None:
        """Raise unless the declaration is complete: at least one step, no expansion left open."""
        if not self._steps:
            raise ContractError(f"pipeline {self.id!r} has no steps")
        if self._expansion is not None:
            raise ContractError(
                f"pipeline {self.id!r}: the expansion of step {self._expansion.id!r} "
                "is never collected"
            )

    def boundaries(self) -> tuple[int, ...]:
        """Every stopBeforeStepIndex, ascending; see the module docstring."""
        stops = {s.index + 1 for s in self._steps if s.kind is StepKind.AWAIT or s.checkpoint}
        stops.add(len(self._steps))
        return tuple(sorted(stops))

    def next_boundary(self, start_index: int) -> int:
        """The stopBeforeStepIndex of a transition starting at ``start_index``."""
        if not 0 <= start_index < len(self._steps):
            raise IndexError(f"pipeline {self.id!r} has no step {start_index}")
        return next(b for b in self.boundaries() if b > start_index)

    def retry_for(self, index: int) -> RetryPolicy:
        return self._steps[index].retry


_CARDINALITY = {StepKind.EXPAND: Cardinality.ONE_TO_MANY, StepKind.COLLECT: Cardinality.MANY_TO_ONE}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _list_item(tp: Any) -> Any | None:
    """The model ``M`` of ``list[M]``, else None."""
    args = typing.get_args(tp) if typing.get_origin(tp) is list else ()
    return args[0] if len(args) == 1 and _is_model(args[0]) else None


def _value_after(spec: StepSpec) -> Any:
    if spec.kind is StepKind.AWAIT:
        if spec.await_policy is not None and spec.await_policy.exclusive:
            return AwaitedOnce[spec.output_type, spec.response_type]  # type: ignore[name-defined]
        return Awaited[spec.output_type, spec.response_type]  # type: ignore[name-defined]
    if spec.kind is StepKind.EXPAND:
        return _list_item(spec.output_type)
    return spec.output_type


def _signature(
    fn: Callable[..., Any], where: str, localns: dict[str, Any]
) -> tuple[Any, Any, bool]:
    """(input annotation, return annotation, whether a StepContext is passed second)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn, localns=localns)
    except (NameError, TypeError, ValueError) as exc:
        raise ContractError(f"{where}: cannot read the function's annotations: {exc}") from exc
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not 1 <= len(params) <= 2 or any(p.kind not in positional for p in params):
        raise ContractError(f"{where}: a step takes (value) or (value, ctx: StepContext)")
    if params[0].name not in hints:
        raise ContractError(f"{where}: parameter {params[0].name!r} has no type annotation")
    if "return" not in hints:
        raise ContractError(f"{where}: missing return annotation")
    ctx = params[1] if len(params) == 2 else None
    if ctx and hints.get(ctx.name) is not StepContext and ctx.name != "ctx":
        raise ContractError(f"{where}: a second parameter must be a StepContext or be named ctx")
    return hints[params[0].name], hints["return"], ctx is not None


def _check_idempotency_fields(model: type[BaseModel], fields: tuple[str, ...], where: str) -> None:
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ContractError(f"{where}: idempotency fields {unknown} are not fields of its input")
