"""The pipelines the crash harness runs, and the two records their steps keep.

* the **invocation log**: every step start, appended by the worker process that ran it
  (one file per process, one JSON line per invocation), so the harness can count re-runs;
* the **effect ledger**: the step's side effect, applied at most once per idempotency key.

The ledger is the pattern ``docs/exactly-once.md`` describes: an idempotent side effect is a
create-if-absent keyed by ``ctx.idempotency_key``. Here the create is ``O_CREAT | O_EXCL`` on a
file named by the key; in production it is a conditional put (``attribute_not_exists``) or the
provider's own idempotency-key header. A redelivered or retried step finds the effect already
there and moves on, so the framework's at-least-once execution yields exactly-once effects.

Every switch is in the input, so the harness knows each execution's expected outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from tpf.errors import NonRetryable, Retryable
from tpf.pipeline import Pipeline, RetryPolicy, StepContext

CHAOS_DIR = "TPF_CHAOS_DIR"


class Job(BaseModel):
    name: str
    sleep_s: float = 0.0
    """How long each step works."""
    long_step: int | None = None
    long_s: float = 0.0
    """How long ``long_step`` works; past the transition deadline, heartbeats keep it alive."""
    fail_attempts: int = 0
    """Transient: the first N attempts of each step raise ``Retryable``."""
    fail_at_step: int | None = None
    """Permanent: this step raises ``NonRetryable``."""
    done: list[str] = []


def _folder(name: str) -> Path:
    root = os.environ.get(CHAOS_DIR)
    if not root:
        raise NonRetryable(f"{CHAOS_DIR} is not set", error_code="CHAOS_MISCONFIGURED")
    folder = Path(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_invocation(ctx: StepContext, *, long: bool) -> None:
    line = json.dumps(
        {
            "long": long,
            "executionId": ctx.execution_id,
            "step": ctx.step_index,
            "transitionKey": ctx.transition_key,
            "idempotencyKey": ctx.idempotency_key,
            "pid": os.getpid(),
            "at": time.time(),
        }
    )
    with (_folder("invocations") / f"{os.getpid()}.log").open("a") as f:
        f.write(line + "\n")


def apply_effect(ctx: StepContext) -> bool:
    """Create the effect named by the idempotency key; False when it already existed."""
    path = _folder("effects") / ctx.idempotency_key.replace("/", "_")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"executionId": ctx.execution_id, "step": ctx.step_index}, f)
    return True


async def act(job: Job, ctx: StepContext) -> Job:
    log_invocation(ctx, long=job.long_step == ctx.step_index)
    await asyncio.sleep(job.long_s if job.long_step == ctx.step_index else job.sleep_s)
    if job.fail_at_step == ctx.step_index:
        raise NonRetryable(f"{job.name}: step {ctx.step_index} refuses", error_code="PERMANENT")
    if ctx.attempt <= job.fail_attempts:
        raise Retryable(f"{job.name}: attempt {ctx.attempt} fails", error_code="TRANSIENT")
    apply_effect(ctx)
    return job.model_copy(update={"done": [*job.done, ctx.step_id]})


# Generous attempts: kills and freezes cost attempts too (a passed deadline counts as one).
plain = Pipeline("chaos.plain", input=Job, retry=RetryPolicy(max_attempts=30))


@plain.step(checkpoint=True)
async def reserve(job: Job, ctx: StepContext) -> Job:
    return await act(job, ctx)


@plain.step()
async def charge(job: Job, ctx: StepContext) -> Job:
    return await act(job, ctx)


@plain.step()
async def notify(job: Job, ctx: StepContext) -> Job:
    return await act(job, ctx)


fragile = Pipeline("chaos.fragile", input=Job, retry=RetryPolicy(max_attempts=3))
"""Fails transiently on every attempt: ends DLQ once its budget of three is spent."""


@fragile.step()
async def attempt(job: Job, ctx: StepContext) -> Job:
    return await act(job.model_copy(update={"fail_attempts": 10**6}), ctx)


PIPELINES = ("tpfctl.chaos.pipelines:plain", "tpfctl.chaos.pipelines:fragile")
