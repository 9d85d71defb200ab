from __future__ import annotations

import pytest

from tpf.wire import (
    Heartbeat,
    MalformedMessage,
    Payload,
    TransitionCommand,
    TransitionResult,
    WorkerIdentity,
    decode,
)

COMMAND = TransitionCommand(
    tenant_id="acme",
    execution_id="e-1",
    pipeline_id="org.example.orders",
    contract_version="sha256:" + "0" * 64,
    release_version="1.0.0",
    current_step_index=0,
    stop_before_step_index=3,
    attempt=1,
    execution_version=1,
    transition_key="e-1:0:1",
    trace_id="t-1",
    deadline_epoch_ms=1,
    input=Payload(payload_type_id="examples.orders.OrderIn", payload='{"orderId":"o-1"}'),
)


def test_a_command_round_trips_with_tpf_field_names() -> None:
    raw = COMMAND.to_json()
    assert '"currentStepIndex":0' in raw and '"stopBeforeStepIndex":3' in raw
    assert decode(raw) == COMMAND


def test_each_envelope_kind_decodes_to_its_own_type() -> None:
    worker = WorkerIdentity(worker_id="w-1", release_version="1.0.0")
    heartbeat = Heartbeat(
        tenant_id="acme",
        execution_id="e-1",
        transition_key="e-1:0:1",
        execution_version=1,
        worker=worker,
        sent_at_epoch_ms=5,
    )
    result = TransitionResult(
        tenant_id="acme",
        execution_id="e-1",
        transition_key="e-1:0:1",
        execution_version=1,
        outcome="COMPLETED",
        next_step_index=3,
        worker=worker,
        duration_ms=2,
    )
    assert isinstance(decode(heartbeat.to_json()), Heartbeat)
    assert isinstance(decode(result.to_json()), TransitionResult)


def test_the_signed_body_excludes_the_signature_and_is_canonical() -> None:
    assert b"signature" not in COMMAND.signed_body()
    assert COMMAND.signed_body() == decode(COMMAND.to_json()).signed_body()


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        "not json",
        "{}",
        '{"kind":"command"}',
        '{"kind":"bogus"}',
        COMMAND.to_json().replace('"protocol":1', '"protocol":9'),
    ],
)
def test_anything_else_is_one_malformed_message_error(raw: str | bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode(raw)
