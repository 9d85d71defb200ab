"""The mixed load: what each execution asks for, and the terminal status it must end in."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tpf.settings import Timings
from tpfctl.chaos.pipelines import Job


@dataclass(frozen=True)
class Planned:
    key: str
    pipeline_id: str
    job: Job
    expected: str
    kind: str

    def body(self) -> dict[str, Any]:
        from tpf.codec import encode_envelope

        return {
            "pipelineId": self.pipeline_id,
            "inputShape": "UNI",
            "inputPayload": encode_envelope("chaos.Job", self.job.model_dump()),
            "idempotencyKey": self.key,
            "outputStreaming": False,
        }


# kind: (share of the load, pipeline, expected status)
MIX = {
    "plain": (0.5, "chaos.plain", "SUCCEEDED"),
    "transient": (0.2, "chaos.plain", "SUCCEEDED"),
    "permanent": (0.1, "chaos.plain", "FAILED"),
    "slow": (0.1, "chaos.plain", "SUCCEEDED"),
    "exhausted": (0.1, "chaos.fragile", "DLQ"),
}


def plan(count: int, *, timings: Timings, rng: random.Random, run_id: str) -> list[Planned]:
    """``count`` executions in the proportions of ``MIX``, shuffled."""
    deadline_s = (timings.queue_allowance + timings.transition_timeout).total_seconds()
    kinds = rng.choices(list(MIX), weights=[w for w, _, _ in MIX.values()], k=count)
    planned = []
    for i, kind in enumerate(kinds):
        _, pipeline_id, expected = MIX[kind]
        job = Job(name=f"{kind}-{i}", sleep_s=rng.uniform(0, 0.2))
        if kind == "transient":
            job = job.model_copy(update={"fail_attempts": 2})
        elif kind == "permanent":
            job = job.model_copy(update={"fail_at_step": rng.randrange(3)})
        elif kind == "slow":
            # Longer than a deadline: only heartbeats keep such a transition alive.
            job = job.model_copy(update={"long_step": rng.randrange(3), "long_s": deadline_s + 1})
        planned.append(Planned(f"{run_id}-{i}", pipeline_id, job, expected, kind))
    return planned
