"""Wire envelopes: every message that crosses SQS (or the REST worker transport).

Frozen at protocol version 1; later work adds optional fields only. Each envelope names its
``kind`` so one decoder serves every queue, and carries a ``signature`` block that covers the
canonical JSON of everything else (``tpf.signing``). Decoding wraps any failure in
``MalformedMessage``, so a poller handles exactly one error type for bad input.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tpf.errors import TpfError

PROTOCOL = 1
TRANSITION_ENCODING = "application/tpf-transition+json"


class MalformedMessage(TpfError):
    """A message that is not a valid envelope of this protocol."""


class Wire(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def signed_body(self) -> bytes:
        """Canonical bytes the signature covers: every field but the signature itself."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"signature"})
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class Signature(Wire):
    """HMAC-SHA256 with an explicit validity window; replay protection comes from fencing."""

    key_id: str
    issued_at_epoch_ms: int
    expires_at_epoch_ms: int
    nonce: str
    value: str


class PayloadRefWire(Wire):
    """Claim check for a payload stored in the payload table or bucket."""

    tier: Literal["item", "s3"]
    digest: str
    size: int | None = None


class Payload(Wire):
    """TPF's payload envelope, with an optional claim check instead of the inline string."""

    payload_type_id: str
    payload_encoding: str = TRANSITION_ENCODING
    payload: str | None = None
    """The JSON document as a string (TPF clients json-decode it)."""
    payload_ref: PayloadRefWire | None = None


class WorkerIdentity(Wire):
    worker_id: str
    release_version: str
    contract_version: str | None = None


class TransitionCommand(Wire):
    """Run ``executionId`` from ``currentStepIndex`` up to ``stopBeforeStepIndex``."""

    kind: Literal["command"] = "command"
    protocol: int = PROTOCOL
    tenant_id: str
    execution_id: str
    pipeline_id: str
    contract_version: str
    release_version: str
    current_step_index: int
    stop_before_step_index: int
    attempt: int
    execution_version: int
    transition_key: str
    redrive_generation: int = 0
    trace_id: str
    deadline_epoch_ms: int
    input: Payload
    """The payload ``currentStepIndex`` starts from (TPF: payloadTypeId/Encoding/payload)."""
    signature: Signature | None = None


class Failure(Wire):
    category: Literal[
        "timeout", "auth", "unavailable", "malformed", "protocol", "cancelled", "unexpected"
    ]
    error_code: str
    message: str
    retryable: bool
    retry_after_ms: int | None = None
    step_index: int | None = None


class Suspension(Wire):
    """An await reached: what the coordinator needs to open the await unit."""

    step_id: str
    step_index: int
    transport: str
    timeout_ms: int
    requests: Payload
    """A JSON list of request payloads (one per item when itemized); by claim check if large,
    or the index of its pages (``tpf.pages``) when long."""
    reads_pages: bool = False
    """The worker reads a long list of answers as pages; a worker before pages existed does
    not say so, and gets one list."""
    continuation: Payload | None = None
    """State to carry past the await (the request itself when omitted)."""


class TransitionResult(Wire):
    kind: Literal["result"] = "result"
    protocol: int = PROTOCOL
    tenant_id: str
    execution_id: str
    transition_key: str
    execution_version: int
    outcome: Literal["COMPLETED", "WAITING_EXTERNAL", "FAILED"]
    next_step_index: int | None = None
    """For COMPLETED: the step to continue at, or the step count when the pipeline ended."""
    output: Payload | None = None
    suspension: Suspension | None = None
    failure: Failure | None = None
    worker: WorkerIdentity
    duration_ms: int
    signature: Signature | None = None


class Heartbeat(Wire):
    """Sent on the results channel while a long transition runs; extends its deadline."""

    kind: Literal["heartbeat"] = "heartbeat"
    protocol: int = PROTOCOL
    tenant_id: str
    execution_id: str
    transition_key: str
    execution_version: int
    worker: WorkerIdentity
    sent_at_epoch_ms: int
    signature: Signature | None = None


class AwaitRequest(Wire):
    """Published to a provider on the await request queue."""

    kind: Literal["await-request"] = "await-request"
    protocol: int = PROTOCOL
    tenant_id: str
    execution_id: str
    unit_id: str
    interaction_id: str
    correlation_id: str
    step_id: str
    step_index: int
    item_index: int | None = None
    idempotency_key: str
    deadline_epoch_ms: int
    request_payload: dict[str, Any]
    resume_token: str | None = None
    input_type: str | None = None
    output_type: str | None = None
    transport_metadata: dict[str, Any] = Field(default_factory=dict)
    """TPF's ``SqsAwaitDispatchEnvelope`` fields: the request's and the answer's type ids, and
    ``{adapter, requestQueue, dispatchedAtEpochMs}``."""
    signature: Signature | None = None


class AwaitCompletion(Wire):
    """A provider's answer on the completion queue (or the HTTP complete call)."""

    kind: Literal["await-completion"] = "await-completion"
    protocol: int = PROTOCOL
    tenant_id: str
    interaction_id: str | None = None
    correlation_id: str | None = None
    resume_token: str | None = None
    idempotency_key: str | None = None
    response_payload: Payload
    actor: str | None = None
    completed_at_epoch_ms: int | None = None
    signature: Signature | None = None


TerminalReason = Literal[
    "retry_exhausted", "non_retryable", "await_timeout", "cancelled", "await_not_opened"
]


class DeadLetter(Wire):
    """Published for every execution that ends FAILED or DLQ: a superset of TPF's
    ``DeadLetterEnvelope`` (its ``terminalStatus``, ``terminalReason``, ``retryable``,
    ``retriesObserved``, ``correlationId``, ``resourceType`` and ``resourceName`` included)."""

    kind: Literal["dead-letter"] = "dead-letter"
    protocol: int = PROTOCOL
    tenant_id: str
    execution_id: str
    execution_key: str
    correlation_id: str
    """TPF's name for the execution's idempotency key."""
    pipeline_id: str
    release_version: str
    transition_key: str | None = None
    status: Literal["FAILED", "DLQ"]
    terminal_status: Literal["FAILED", "DLQ"]
    reason: str
    terminal_reason: TerminalReason
    error_code: str
    error_message: str
    retryable: bool
    """Whether the last failure was one a retry could cure (its retries ran out)."""
    attempts: int
    retries_observed: int
    resource_type: Literal["tpf.orchestrator.execution"] = "tpf.orchestrator.execution"
    resource_name: Literal["OrchestratorService/Run"] = "OrchestratorService/Run"
    created_at_epoch_ms: int
    failed_at_epoch_ms: int


class HostedPipeline(Wire):
    pipeline_id: str
    contract_version: str


WorkerState = Literal["RUNNING", "DRAINING", "STOPPED"]


class WorkerPresence(Wire):
    """A worker's identity and state, on the results channel: at start, every heartbeat interval
    and as it drains. The coordinator keeps the worker registry from these (never the admin API)."""

    kind: Literal["presence"] = "presence"
    protocol: int = PROTOCOL
    worker_id: str
    release_version: str
    pipelines: list[HostedPipeline]
    artifact_digest: str | None = None
    transport: Literal["sqs", "rest"] = "sqs"
    endpoint: str | None = None
    """Where a REST worker takes commands; None for queue consumers."""
    state: WorkerState = "RUNNING"
    sent_at_epoch_ms: int
    signature: Signature | None = None


class Misrouted(Wire):
    """A worker's refusal of a command pinned to a release it does not run; never executed.
    The coordinator sends the command again to its release's own queue."""

    kind: Literal["misrouted"] = "misrouted"
    protocol: int = PROTOCOL
    tenant_id: str
    execution_id: str
    transition_key: str
    execution_version: int
    release_version: str
    worker: WorkerIdentity
    signature: Signature | None = None


Envelope = Annotated[
    TransitionCommand
    | TransitionResult
    | Heartbeat
    | WorkerPresence
    | Misrouted
    | AwaitRequest
    | AwaitCompletion
    | DeadLetter,
    Field(discriminator="kind"),
]
_envelope: TypeAdapter[Envelope] = TypeAdapter(Envelope)


class ProviderCompletion(Wire):
    """TPF's ``SqsAwaitCompletionEnvelope``: the answer TPF's providers put on the completion
    queue. No ``kind`` or signature; ``responsePayload`` is the answer itself, not an envelope;
    blank strings mean absent; ``interactionId`` or ``correlationId`` names the interaction."""

    tenant_id: str = Field(min_length=1)
    interaction_id: str | None = None
    correlation_id: str | None = None
    resume_token: str | None = None
    idempotency_key: str | None = None
    response_payload: dict[str, Any]
    actor: str | None = None

    @field_validator(
        "interaction_id",
        "correlation_id",
        "resume_token",
        "idempotency_key",
        "actor",
        mode="before",
    )
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _names_an_interaction(self) -> ProviderCompletion:
        if self.interaction_id is None and self.correlation_id is None:
            raise ValueError("interactionId or correlationId is required")
        return self


_provider_completion = TypeAdapter(ProviderCompletion)


def decode_provider_completion(raw: str | bytes) -> ProviderCompletion:
    """A TPF provider's completion; ``MalformedMessage`` when the body is not one."""
    try:
        return _provider_completion.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"])
        raise MalformedMessage(f"not a TPF completion: {where}: {first['msg']}") from exc


def decode(raw: str | bytes) -> Envelope:
    """Parse any envelope; every failure becomes ``MalformedMessage`` with a short reason."""
    try:
        envelope = _envelope.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"])
        raise MalformedMessage(f"not a tpf envelope: {where}: {first['msg']}") from exc
    if envelope.protocol != PROTOCOL:
        raise MalformedMessage(f"unsupported protocol version {envelope.protocol}")
    return envelope
