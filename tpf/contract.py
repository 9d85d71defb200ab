"""The contract: everything the coordinator knows about a pipeline, without importing its code.

A contract is derived from a :class:`~tpf.pipeline.Pipeline` on the worker side, registered with
the coordinator as JSON, and identified by its *version*: the SHA-256 of its canonical JSON
(sorted keys, no whitespace, UTF-8). Declaring the same pipeline twice gives the same version;
changing a step id, the order, a kind, a policy or a schema gives another, so a worker built from
other code cannot silently serve executions pinned to this contract.

Payloads are checked with JSON Schema draft 2020-12 (pydantic emits ``$defs``). Formats
(``date-time``, ``uuid``) are annotations only, as the draft says by default: the coordinator
refuses what is structurally wrong, while value checks stay with the step code that owns them
(a malformed decision is a completion that fails at the next step, not a 400).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from hashlib import sha256
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic import ValidationError as ModelValidationError
from pydantic.alias_generators import to_camel

from tpf.errors import ContractError, InvalidInput
from tpf.pipeline import Cardinality, Pipeline, RetryPolicy, StepKind, StepSpec, type_id

_MS = timedelta(milliseconds=1)
_MAX_MESSAGE = 300  # jsonschema quotes the offending value, which may be a whole payload


class _Wire(BaseModel):
    # camelCase on the wire, snake_case in Python; unknown fields are refused rather than dropped,
    # since dropping them would change the version of a document the sender already hashed.
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )


class TypeRef(_Wire):
    type_id: str
    json_schema: dict[str, Any] = Field(alias="schema")

    @classmethod
    def of(cls, model: type[BaseModel]) -> TypeRef:
        return cls(type_id=type_id(model), schema=model.model_json_schema())


class ContractRetry(_Wire):
    max_attempts: int = Field(ge=1)
    base_delay_ms: int = Field(ge=0)
    multiplier: float = Field(ge=1.0)
    cap_ms: int = Field(ge=0)

    @classmethod
    def of(cls, policy: RetryPolicy) -> ContractRetry:
        return cls(
            max_attempts=policy.max_attempts,
            base_delay_ms=policy.base_delay // _MS,
            multiplier=policy.multiplier,
            cap_ms=policy.cap // _MS,
        )

    def backoff(self, attempt: int) -> timedelta:
        """The delay after attempt ``attempt`` (1-based) failed: base * multiplier^(n-1), capped."""
        factor = self.multiplier ** max(attempt - 1, 0)
        # Cap in float first: a large factor would overflow timedelta before the cap applied.
        return timedelta(milliseconds=min(self.base_delay_ms * factor, self.cap_ms))


class ContractAwait(_Wire):
    transport: str
    timeout_ms: int = Field(ge=0)
    on_timeout: Literal["FAIL"]
    idempotency_fields: tuple[str, ...]
    response: TypeRef
    exclusive_ms: int | None = Field(default=None, gt=0)
    """Each key sent once per tenant within this period (``AwaitPolicy.exclusive``)."""

    @model_serializer(mode="wrap")
    def _without_unset_exclusive(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Absent rather than null when unset, so contracts written before the field existed
        # keep their version.
        document: dict[str, Any] = handler(self)
        for name in ("exclusive_ms", "exclusiveMs"):
            if document.get(name, 0) is None:
                del document[name]
        return document


class ContractStep(_Wire):
    index: int = Field(ge=0)
    id: str
    kind: StepKind
    cardinality: Cardinality
    checkpoint: bool
    per_item: bool
    itemized: bool
    input_type_id: str
    output_type_id: str
    retry: ContractRetry
    await_: ContractAwait | None = Field(alias="await")

    @classmethod
    def of(cls, spec: StepSpec) -> ContractStep:
        policy, response = spec.await_policy, spec.response_type
        awaits = None
        if policy is not None and response is not None:
            awaits = ContractAwait(
                transport=policy.transport,
                timeout_ms=policy.timeout // _MS,
                on_timeout=policy.on_timeout,
                idempotency_fields=policy.idempotency_fields,
                response=TypeRef.of(response),
                exclusive_ms=policy.exclusive // _MS if policy.exclusive else None,
            )
        return cls(
            index=spec.index,
            id=spec.id,
            kind=spec.kind,
            cardinality=spec.cardinality,
            checkpoint=spec.checkpoint,
            per_item=spec.per_item,
            itemized=spec.itemized,
            input_type_id=type_id(spec.input_type),
            output_type_id=type_id(spec.output_type),
            retry=ContractRetry.of(spec.retry),
            **{"await": awaits},  # a keyword in Python, so only the alias can name it
        )


class Contract(_Wire):
    schema_version: Literal[1] = 1
    pipeline_id: str = Field(min_length=1)
    input: TypeRef
    output: TypeRef
    steps: tuple[ContractStep, ...] = Field(min_length=1)
    boundaries: tuple[int, ...]
    """Every stopBeforeStepIndex, as :meth:`tpf.pipeline.Pipeline.boundaries` defines them."""
    retry: ContractRetry
    """The pipeline's default; each step carries its effective policy."""

    _version: str | None = PrivateAttr(default=None)
    _validators: dict[str, Draft202012Validator] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> Contract:
        pipeline.check()
        return cls(
            pipeline_id=pipeline.id,
            input=TypeRef.of(pipeline.input_type),
            output=TypeRef.of(pipeline.output_type),
            steps=tuple(ContractStep.of(s) for s in pipeline.steps),
            boundaries=pipeline.boundaries(),
            retry=ContractRetry.of(pipeline.retry),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Contract:
        """Load a registered document; any defect is a :class:`ContractError`."""
        try:
            return cls.model_validate_json(raw)
        except ModelValidationError as exc:
            raise ContractError(f"not a usable contract: {exc}") from exc

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        # A hand-edited or truncated document must fail at registration, not mid-execution.
        if [s.index for s in self.steps] != list(range(len(self.steps))):
            raise ValueError("step indexes must be 0..n-1 in order")
        if len({s.id for s in self.steps}) != len(self.steps):
            raise ValueError("step ids must be unique")
        for step in self.steps:
            if (step.kind is StepKind.AWAIT) != (step.await_ is not None):
                raise ValueError(f"step {step.id!r}: 'await' is set exactly for await steps")
        stops = {s.index + 1 for s in self.steps if s.kind is StepKind.AWAIT or s.checkpoint}
        if self.boundaries != tuple(sorted(stops | {len(self.steps)})):
            raise ValueError("boundaries do not match the await and checkpoint steps")
        for ref in (self.input, self.output, *(a.response for a in self._awaits())):
            try:
                Draft202012Validator.check_schema(ref.json_schema)
            except SchemaError as exc:
                raise ValueError(f"schema of {ref.type_id} is invalid: {exc.message}") from exc
        return self

    # -- identity ------------------------------------------------------------------------------

    def canonical_json(self) -> bytes:
        document = self.model_dump(mode="json", by_alias=True)
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode()

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = "sha256:" + sha256(self.canonical_json()).hexdigest()
        return self._version

    # Equal when the versions are: pydantic's own __eq__ would also compare the private caches.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contract) and self.version == other.version

    def __hash__(self) -> int:
        return hash(self.version)

    # -- lookups -------------------------------------------------------------------------------

    def step(self, step_id: str) -> ContractStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise ContractError(f"pipeline {self.pipeline_id!r} has no step {step_id!r}")

    @property
    def await_steps(self) -> tuple[ContractStep, ...]:
        return tuple(s for s in self.steps if s.await_ is not None)

    def next_boundary(self, start_index: int) -> int:
        """The stopBeforeStepIndex of a transition starting at ``start_index``."""
        if not 0 <= start_index < len(self.steps):
            raise IndexError(f"pipeline {self.pipeline_id!r} has no step {start_index}")
        return next(b for b in self.boundaries if b > start_index)

    # -- validation ----------------------------------------------------------------------------

    def validate_input(self, data: Any) -> None:
        """Raise :class:`InvalidInput` with the JSON pointer of the first offending field."""
        self._check("input", self.input, data, f"input of pipeline {self.pipeline_id!r}")

    def validate_await_response(self, step_id: str, data: Any) -> None:
        step = self.step(step_id)
        if step.await_ is None:
            raise ContractError(f"step {step_id!r} of {self.pipeline_id!r} is not an await step")
        self._check(f"await:{step_id}", step.await_.response, data, f"response to {step_id!r}")

    def _awaits(self) -> Iterable[ContractAwait]:
        return (s.await_ for s in self.steps if s.await_ is not None)

    def _check(self, key: str, ref: TypeRef, data: Any, what: str) -> None:
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = Draft202012Validator(ref.json_schema)
        error = best_match(validator.iter_errors(data))
        if error is not None:
            message = f"{what}: {error.message}"
            if len(message) > _MAX_MESSAGE:
                message = message[: _MAX_MESSAGE - 3] + "..."
            raise InvalidInput(message, pointer=pointer_of(error))


def pointer_of(error: ValidationError) -> str:
    """RFC 6901 pointer to the offending field; for a missing or extra property, to that name."""
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if isinstance(instance, dict):
        if error.validator == "required":
            path.extend([p for p in error.validator_value if p not in instance][:1])
        elif error.validator == "additionalProperties" and isinstance(error.schema, dict):
            known = error.schema.get("properties", {})
            path.extend(sorted(k for k in instance if k not in known)[:1])
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
