"""The worker directory's ports: worker items in the registry table, and Lambda event source
mappings; with the errors both adapters raise the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tpf.errors import Conflict, NotFound
from tpf.registry.worker_items import WORKER_PREFIX

Value = str | int | None
"""An attribute value; ``None`` removes the attribute."""
Item = dict[str, Any]


class WorkerTable(Protocol):
    """Port: worker items of the registry table; every write returns the item after it."""

    async def put(
        self, pk: str, sk: str, fields: Mapping[str, Value], *, registered_at_ms: int
    ) -> Item:
        """Create or update: set ``fields`` (``None`` removes), set the registration time only
        when absent, and leave the drain request alone."""

    async def heartbeat(self, pk: str, sk: str, *, at_ms: int, expires_at_s: int) -> Item:
        """Move the heartbeat and expiry of an existing process worker. ``NotFound`` when there
        is no item, ``Conflict`` for a Lambda worker (it does not heartbeat and never expires)."""

    async def request_drain(self, pk: str, sk: str, *, at_ms: int) -> Item:
        """Mark an existing worker for draining; the first request's time stays. ``NotFound``
        when there is no item."""

    async def get(self, pk: str, sk: str) -> Item | None: ...

    async def query(self, pk: str) -> list[Item]:
        """Every worker item of the partition, in worker id order."""


class EventSourceMappings(Protocol):
    """Port: whether a Lambda function is consuming its queue."""

    async def enabled(self, function_name: str) -> bool: ...


def no_lambda_heartbeat(pk: str, sk: str) -> Conflict:
    return Conflict(
        f"worker {sk.removeprefix(WORKER_PREFIX)!r} of {pk} is a Lambda worker: its health is "
        "its event source mapping, not heartbeats",
        code="LAMBDA_WORKER",
    )


def unknown_worker(pk: str, sk: str) -> NotFound:
    return NotFound(f"no worker {sk.removeprefix(WORKER_PREFIX)!r} in {pk}")
