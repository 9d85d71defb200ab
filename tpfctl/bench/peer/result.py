"""The peer line: both rates, their ratio against the target, and how each side was set up."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from tpfctl.bench.drive import PLAIN
from tpfctl.bench.targets import at_least, ratio

TARGET = 1.5
"""tpf's executions per second over the peer's, in the same run."""

TPF_RECORD = "an execution record (every state change) and its history, in DynamoDB"
CELERY_RECORD = None
"""Celery keeps nothing per execution once a chain's messages are deleted."""
COMPLETION = (
    "the chain's last task appends its execution id and time to its worker's file "
    "(no result backend)"
)


@dataclass(frozen=True)
class Timed:
    """A round of one side: executions from the first submit to the last one finished."""

    executions: int
    submitted_at: float
    finished_at: float
    statuses: dict[str, int]
    cpu_seconds: float | None = None
    """User + system CPU of the side's serving processes over the round (None without /proc)."""

    @property
    def seconds(self) -> float:
        return self.finished_at - self.submitted_at

    @property
    def executions_per_second(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class PeerRound:
    tpf: Timed
    celery: Timed


@dataclass(frozen=True)
class Setup:
    executions_per_round: int
    workers: int
    threads_per_worker: int
    submit_concurrency: int


def line(rounds: list[PeerRound], setup: Setup) -> dict[str, Any]:
    tpf = _median(r.tpf.executions_per_second for r in rounds)
    celery = _median(r.celery.executions_per_second for r in rounds)
    return {
        "benchmark": "peer",
        "pipeline": PLAIN,
        "executions_per_round": setup.executions_per_round,
        "rounds": len(rounds),
        "workers": setup.workers,
        "threads_per_worker": setup.threads_per_worker,
        "submit_concurrency": setup.submit_concurrency,
        "tpf_executions_per_second": tpf,
        "celery_executions_per_second": celery,
        # Each round pairs the two sides under the same load on the machine: the ratio is the
        # median of the rounds' own, as throughput's efficiency is.
        "ratio": at_least(statistics.median(_ratio(r) for r in rounds), TARGET),
        "cpu_ms_per_execution": {
            "tpf": _cpu_ms_per_execution([r.tpf for r in rounds]),
            "celery": _cpu_ms_per_execution([r.celery for r in rounds]),
        },
        "tpf": {
            "statuses": _summed(r.tpf.statuses for r in rounds),
            "durable_record": TPF_RECORD,
        },
        "celery": {
            "version": _version("celery"),
            "kombu": _version("kombu"),
            "transport": "sqs",
            "pool": "threads",
            "result_backend": None,
            "statuses": _summed(r.celery.statuses for r in rounds),
            "completion": COMPLETION,
            "durable_record": CELERY_RECORD,
        },
        "by_round": [
            {
                "tpf_executions_per_second": round(r.tpf.executions_per_second, 2),
                "tpf_wall_seconds": round(r.tpf.seconds, 2),
                "celery_executions_per_second": round(r.celery.executions_per_second, 2),
                "celery_wall_seconds": round(r.celery.seconds, 2),
                "ratio": round(_ratio(r), 3),
            }
            for r in rounds
        ],
    }


def _ratio(pair: PeerRound) -> float:
    return ratio(pair.tpf.executions_per_second, pair.celery.executions_per_second)


def _cpu_ms_per_execution(timed: list[Timed]) -> float | None:
    """Totals over the rounds: CPU seconds are coarse (clock ticks), sums are steadier."""
    spent = [t.cpu_seconds for t in timed]
    if any(s is None for s in spent):
        return None
    return round(
        1000 * sum(s for s in spent if s is not None) / sum(t.executions for t in timed), 3
    )


def _median(values: Any) -> float:
    return round(float(statistics.median(values)), 2)


def _summed(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counts:
        for status, n in each.items():
            total[status] = total.get(status, 0) + n
    return total


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
