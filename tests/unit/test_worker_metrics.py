"""A worker's metrics endpoint: served while it runs when ``TPF_METRICS_PORT`` is set."""

from __future__ import annotations

import httpx

from tpf import metrics
from tpf.settings import Settings
from tpfctl.stack import free_port
from worker.role import metrics_endpoint


def test_a_worker_serves_its_metrics_only_while_it_runs_and_only_when_asked() -> None:
    port = free_port()
    metrics.TRANSITIONS.labels(role="worker", outcome="COMPLETED").inc()
    with metrics_endpoint(Settings(metrics_port=port)):
        body = httpx.get(f"http://127.0.0.1:{port}/q/metrics", timeout=5).text
    assert "tpf_transitions_total" in body
    try:
        httpx.get(f"http://127.0.0.1:{port}/q/metrics", timeout=1)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the endpoint outlived the worker")
    with metrics_endpoint(Settings()):  # no port: nothing to serve, nothing to fail
        pass
