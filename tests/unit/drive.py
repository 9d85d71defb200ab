"""Driving an in-memory coordinator by hand: submit, take commands, report results."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from pydantic import BaseModel

from coordinator.testing import InMemoryCoordinator
from examples.orders import orders
from tpf.pipeline import Pipeline, RetryPolicy
from tpf.wire import Failure, Payload, TransitionCommand, TransitionResult, WorkerIdentity, decode

WORKER = WorkerIdentity(worker_id="w-test", release_version="1.0.0")
ORDER = {"orderId": "o-1", "amountCents": 1200, "customer": "Ada"}


class Doc(BaseModel):
    n: int


checkpointed = Pipeline(
    "org.example.checkpointed",
    input=Doc,
    retry=RetryPolicy(max_attempts=2, base_delay=timedelta(0)),  # retries go out at once
)


@checkpointed.step(checkpoint=True)
def first(doc: Doc) -> Doc:
    return Doc(n=doc.n + 1)


@checkpointed.step()
def second(doc: Doc) -> Doc:
    return Doc(n=doc.n * 10)


async def commands(c: InMemoryCoordinator) -> list[TransitionCommand]:
    received = await c.work.receive(wait_s=0)
    found = []
    for message in received:
        command = decode(message.body)
        assert isinstance(command, TransitionCommand)
        c.signer.verify(command, channel="work", now_ms=command.signature.issued_at_epoch_ms)  # type: ignore[union-attr]
        found.append(command)
        await c.work.delete(message.receipt)
    return found


async def submit(
    c: InMemoryCoordinator, pipeline: str = orders.id, value: object = ORDER, key: str | None = None
) -> str:
    outcome = await c.service.submit(
        tenant_id="acme",
        pipeline_id=pipeline,
        value=value,
        idempotency_key=key or uuid.uuid4().hex,
        now_ms=1_000,
    )
    return outcome.record.execution_id


def completed(command: TransitionCommand, next_step: int, output: object) -> TransitionResult:
    return TransitionResult(
        tenant_id=command.tenant_id,
        execution_id=command.execution_id,
        transition_key=command.transition_key,
        execution_version=command.execution_version,
        outcome="COMPLETED",
        next_step_index=next_step,
        output=Payload(payload_type_id="t", payload=json.dumps(output)),
        worker=WORKER,
        duration_ms=1,
    )


def failed(command: TransitionCommand, *, retryable: bool = True) -> TransitionResult:
    return TransitionResult(
        tenant_id=command.tenant_id,
        execution_id=command.execution_id,
        transition_key=command.transition_key,
        execution_version=command.execution_version,
        outcome="FAILED",
        worker=WORKER,
        duration_ms=1,
        failure=Failure(
            category="unexpected", error_code="BOOM", message="it broke", retryable=retryable
        ),
    )
