"""Pipelines the end-to-end tests run in real worker processes.

Steps leave marker files in ``$TPF_TEST_MARKERS`` so a test can see, from outside, which step
ran how often and when (the workers are separate processes).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from tpf.errors import Retryable
from tpf.pipeline import Awaited, Pipeline, RetryPolicy, StepContext


class Job(BaseModel):
    name: str
    seconds: float = 0.0


class Done(BaseModel):
    name: str
    by: str


def mark(step: str, ctx: StepContext) -> None:
    folder = os.environ.get("TPF_TEST_MARKERS")
    if folder:
        Path(folder, f"{step}.{ctx.execution_id}.{uuid.uuid4().hex[:6]}").write_text(
            ctx.transition_key
        )


slow = Pipeline("org.tests.slow", input=Job, retry=RetryPolicy(max_attempts=5))


@slow.step()
async def work(job: Job, ctx: StepContext) -> Done:
    mark("work", ctx)
    await asyncio.sleep(job.seconds)
    return Done(name=job.name, by=str(os.getpid()))


broken = Pipeline("org.tests.broken", input=Job, retry=RetryPolicy(max_attempts=2))


@broken.step()
def explode(job: Job, ctx: StepContext) -> Done:
    mark("explode", ctx)
    raise ZeroDivisionError(f"cannot divide {job.name}")


fixable = Pipeline("org.tests.fixable", input=Job, retry=RetryPolicy(max_attempts=1))
"""Dead-letters its first run; runs once a test left ``fixed.<name>`` among the markers (a fix
deployed), so a re-drive then succeeds."""


@fixable.step()
def repair(job: Job, ctx: StepContext) -> Done:
    folder = os.environ.get("TPF_TEST_MARKERS")
    if not (folder and Path(folder, f"fixed.{job.name}").exists()):
        raise RuntimeError(f"{job.name} is not fixed yet")
    return Done(name=job.name, by=str(os.getpid()))


class Hold(BaseModel):
    name: str
    seconds: float = 0.0
    rerun_seconds: float | None = None
    """How long a run sleeps once an earlier run of the same execution left its marker."""


tracked = Pipeline("org.tests.tracked", input=Hold, retry=RetryPolicy(max_attempts=5))
"""Like ``slow``, but its marker names the worker process, so a test can signal that very one."""


@tracked.step()
async def hold(job: Hold, ctx: StepContext) -> Done:
    seconds = job.seconds
    folder = os.environ.get("TPF_TEST_MARKERS")
    if folder:
        if job.rerun_seconds is not None and any(Path(folder).glob(f"hold.{ctx.execution_id}.*")):
            seconds = job.rerun_seconds
        name = f"hold.{ctx.execution_id}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        Path(folder, name).write_text(ctx.transition_key)
    await asyncio.sleep(seconds)
    return Done(name=job.name, by=str(os.getpid()))


class Ask(BaseModel):
    question: str


class Reply(BaseModel):
    answer: str


short_wait = Pipeline("org.tests.short-wait", input=Ask)


@short_wait.await_(response=Reply, timeout=timedelta(seconds=2))
def ask_briefly(ask: Ask) -> Ask:
    return ask


class Visit(BaseModel):
    name: str
    seconds: float = 0.0
    """How long the first step runs (keeps an execution RUNNING across a rollout)."""
    fail_attempts: int = 0
    """Attempts of the first step that fail transiently (keeps it retrying across a rollout)."""
    retry_seconds: float = 0.0
    """Delay before each retry."""


class Farewell(BaseModel):
    name: str
    release: str
    pid: int


def rollout(release: str) -> Pipeline:
    """``org.tests.rollout`` as release ``release`` ships it: run, await a sign-in, leave.
    The two releases differ in output, so their contracts differ too."""
    pipeline = Pipeline("org.tests.rollout", input=Visit, retry=RetryPolicy(max_attempts=8))

    @pipeline.step()
    async def arrive(visit: Visit, ctx: StepContext) -> Visit:
        mark(f"arrive-{release}", ctx)
        if ctx.attempt <= visit.fail_attempts:
            wait = timedelta(seconds=visit.retry_seconds)
            raise Retryable(f"not open yet (attempt {ctx.attempt})", retry_after=wait)
        await asyncio.sleep(visit.seconds)
        return visit

    @pipeline.await_(id="SignIn", response=Reply, timeout=timedelta(minutes=5))
    def sign_in(visit: Visit) -> Visit:
        return visit

    @pipeline.step(id=f"leave-v{release}")
    def leave(answer: Awaited[Visit, Reply], ctx: StepContext) -> Farewell:
        mark(f"leave-{release}", ctx)
        return Farewell(name=answer.request.name, release=release, pid=os.getpid())

    return pipeline


rollout_v1 = rollout("1")
rollout_v2 = rollout("2")
