"""Where a worker's items live in the registry table: the coordinator keeps them from presence
reports, and the worker reads one attribute back, the drain an operator asked for."""

from __future__ import annotations

DRAIN_ATTRIBUTE = "dr"
WORKER_PREFIX = "worker#"


def worker_item_key(pipeline_id: str, worker_id: str) -> tuple[str, str]:
    return f"pipeline#{pipeline_id}", f"{WORKER_PREFIX}{worker_id}"
