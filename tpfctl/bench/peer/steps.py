"""The orders pipeline's step functions, called one at a time on plain JSON, as a peer calls them.

A Celery task receives JSON and must hand JSON on, so each call validates its input into the
step's model, runs the step exactly as tpf's worker does (:func:`tpf.pipeline.call_step`, with a
context naming the execution) and dumps the output. No Celery here: the unit tests run it bare.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from examples.orders import orders
from tpf.pipeline import StepContext, call_step, idempotency_key

TENANT = "peer"
RELEASE = "1.0.0"
STEP_IDS = tuple(spec.id for spec in orders.steps)


def run_step(index: int, payload: Any, execution_id: str) -> Any:
    """Step ``index`` of ``org.example.orders`` on ``payload``; its output as JSON."""
    spec = orders.steps[index]
    ctx = StepContext(
        tenant_id=TENANT,
        execution_id=execution_id,
        pipeline_id=orders.id,
        step_id=spec.id,
        step_index=index,
        attempt=1,
        transition_key=f"{execution_id}:{index}",
        idempotency_key=idempotency_key(TENANT, execution_id, index),
        release_version=RELEASE,
    )
    value = spec.input_type.model_validate(payload)
    result = _loop().run_until_complete(call_step(spec, value, ctx))
    return result.model_dump(mode="json")


_local = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop per thread (``price`` is a coroutine), kept rather than made per call:
    a Celery thread pool runs many tasks on few threads."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None:
        loop = _local.loop = asyncio.new_event_loop()
    return loop
