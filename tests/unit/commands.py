"""A worker's view of the coordinator: the first command of an execution, as it would arrive."""

from __future__ import annotations

import json

from tpf.contract import Contract
from tpf.pipeline import Pipeline
from tpf.wire import Payload, TransitionCommand
from worker.command import epoch_ms


def first_command(pipeline: Pipeline, value: object, execution: str = "e-1") -> TransitionCommand:
    """Steps 0 up to the first boundary, attempt 1, a minute before its deadline."""
    return TransitionCommand(
        tenant_id="t-1",
        execution_id=execution,
        pipeline_id=pipeline.id,
        contract_version=Contract.from_pipeline(pipeline).version,
        release_version="1.0.0",
        current_step_index=0,
        stop_before_step_index=pipeline.next_boundary(0),
        attempt=1,
        execution_version=1,
        transition_key=f"{execution}:0:1",
        trace_id="trace",
        deadline_epoch_ms=epoch_ms() + 60_000,
        input=Payload(payload_type_id="input", payload=json.dumps(value)),
    )
