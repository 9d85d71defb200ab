"""A worker's view of the coordinator: the first command of an execution, as it would arrive,
and the fence over the coordinator's own store (one process holds both roles)."""

from __future__ import annotations

import json

from coordinator.store import ExecutionStore
from tpf.contract import Contract
from tpf.pipeline import Pipeline
from tpf.wire import Payload, TransitionCommand
from worker.command import epoch_ms
from worker.fence import live


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


class StoreFence:
    """The same rule over an execution store, for one-process use and tests."""

    def __init__(self, store: ExecutionStore) -> None:
        self.store = store

    async def is_live(self, command: TransitionCommand) -> bool:
        record = await self.store.get(command.tenant_id, command.execution_id)
        if record is None:
            return False
        item = {"st": record.status.value, "tk": record.transition_key, "v": record.version}
        return live(item, command)
