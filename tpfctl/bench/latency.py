"""Per-transition overhead: from command sent to result committed, minus the step's own time.

The history gives both ends: the entry a dispatch writes (``RUNNING``, stamped just before the
record write and the send) and the next one, stamped when the coordinator took the result up
(before its read and conditional write). The worker's ``result-sent`` log line splits the
interval into the way there (queue, receive, run, send) and the way back (queue, receive).
Step time is the result's ``durationMs`` where the worker logs it; where it does not, nothing is
subtracted, which overstates the overhead by the steps' run time (microseconds for the plain
pipeline's steps).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.history import Change
from tpf.records import Status
from tpfctl.bench.drive import PLAIN, Load
from tpfctl.bench.session import LazySession


@dataclass(frozen=True)
class Sent:
    at_ms: float
    duration_ms: float | None


@dataclass(frozen=True)
class Sample:
    overhead_ms: float
    to_result_sent_ms: float | None
    result_sent_to_commit_ms: float | None
    step_ms: float | None


def results_sent(logs: list[Path]) -> dict[str, Sent]:
    """The workers' ``result-sent`` lines by transition key."""
    found: dict[str, Sent] = {}
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if '"result-sent"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            duration = entry.get("durationMs")
            found[entry["transitionKey"]] = Sent(
                at_ms=float(entry["ts"]) * 1000,
                duration_ms=float(duration) if duration is not None else None,
            )
    return found


def samples(histories: dict[str, list[Change]], sent: dict[str, Sent]) -> list[Sample]:
    out = []
    for changes in histories.values():
        by_version = {c.version: c for c in changes}
        for dispatched in changes:
            committed = by_version.get(dispatched.version + 1)
            key = dispatched.transition_key
            if dispatched.status is not Status.RUNNING or committed is None or key is None:
                continue
            total = committed.at_ms - dispatched.at_ms
            result = sent.get(key)
            step = result.duration_ms if result else None
            out.append(
                Sample(
                    overhead_ms=total - (step or 0.0),
                    to_result_sent_ms=result.at_ms - dispatched.at_ms if result else None,
                    result_sent_to_commit_ms=committed.at_ms - result.at_ms if result else None,
                    step_ms=step,
                )
            )
    return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99, and the mean and maximum."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {
        "p50": round(rank(50), 1),
        "p95": round(rank(95), 1),
        "p99": round(rank(99), 1),
        "mean": round(sum(ordered) / len(ordered), 1),
        "max": round(ordered[-1], 1),
    }


def summary(found: list[Sample]) -> dict[str, Any]:
    steps = [s.step_ms for s in found if s.step_ms is not None]
    return {
        "transitions": len(found),
        "overhead_ms": percentiles([s.overhead_ms for s in found]),
        "to_result_sent_ms": percentiles(
            [s.to_result_sent_ms for s in found if s.to_result_sent_ms is not None]
        ),
        "result_sent_to_commit_ms": percentiles(
            [s.result_sent_to_commit_ms for s in found if s.result_sent_to_commit_ms is not None]
        ),
        "step_ms_source": "worker durationMs" if steps else "not logged; nothing subtracted",
    }


def run(bench: LazySession) -> list[dict[str, Any]]:
    session = bench.get()
    load = Load(PLAIN, tenant="latency", executions=bench.options.latency, one_at_a_time=True)
    measured = session.measure(load)
    found = samples(measured.histories, results_sent(session.worker_logs()))
    return [
        {
            "benchmark": "latency",
            "pipeline": PLAIN,
            "load": "one execution at a time",
            "executions": len(measured.outcome.records),
            **summary(found),
        }
    ]
