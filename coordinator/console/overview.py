"""The Overview: how a tenant's newest executions stand, and this replica's queue depths and
await latencies from the metrics it already keeps.

Counts read the search index, never a Scan, and stop at ``COUNTED`` executions ("1,000+"):
counters kept on every write would cost a write each. Queue depths are the coordinator's
``tpf_queue_depth`` samples; await latencies are ``tpf_await_seconds`` as observed by this
replica since it started (a dashboard over ``/q/metrics`` sums the replicas).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coordinator.console.pages import render, tenant_router
from coordinator.store.search import ExecutionQuery
from coordinator.wiring import Coordinator
from tpf import metrics
from tpf.records import Status

COUNTED = 1000
PAGE = 200


def overview_router(coordinator: Coordinator) -> APIRouter:
    router = tenant_router()

    @router.get("/overview")
    async def overview(tenant_id: str, request: Request) -> Response:
        counts, more = await _newest_by_status(coordinator, tenant_id)
        return render(
            request,
            "overview.html",
            tenant=tenant_id,
            counts=[(s.value, counts.get(s.value, 0)) for s in Status],
            counted=sum(counts.values()),
            more=more,
            depths=queue_depths(),
            awaits=_await_latencies(),
        )

    return router


async def _newest_by_status(coordinator: Coordinator, tenant_id: str) -> tuple[Counter[str], bool]:
    counts: Counter[str] = Counter()
    query = ExecutionQuery(tenant_id, limit=PAGE)
    cursor = None
    while sum(counts.values()) < COUNTED:
        page = await coordinator.service.search(query, cursor)
        counts.update(r.status.value for r in page.records)
        cursor = page.cursor
        if cursor is None:
            break
    return counts, cursor is not None


def queue_depths() -> list[tuple[str, str, int]]:
    """(queue, state, messages) as last sampled by this replica."""
    return sorted(
        (s.labels["queue"], s.labels["state"], int(s.value))
        for family in metrics.QUEUE_DEPTH.collect()
        for s in family.samples
    )


def _await_latencies() -> list[dict[str, Any]]:
    """Per pipeline, step and outcome: how many awaits closed and their mean open time."""
    totals: dict[tuple[str, ...], dict[str, float]] = {}
    for family in metrics.AWAIT_SECONDS.collect():
        for s in family.samples:
            kind = s.name.rsplit("_", 1)[-1]
            if kind not in ("count", "sum"):
                continue
            key = (s.labels["pipeline"], s.labels["step"], s.labels["outcome"])
            totals.setdefault(key, {})[kind] = s.value
    return [
        {
            "pipeline": pipeline,
            "step": step,
            "outcome": outcome,
            "count": int(t.get("count", 0)),
            "mean_s": t.get("sum", 0.0) / t["count"] if t.get("count") else 0.0,
        }
        for (pipeline, step, outcome), t in sorted(totals.items())
    ]
