"""The execution table port: the few primitives an adapter must provide.

Domain operations (``coordinator.store.executions``) are written once on top of these; the
DynamoDB adapter and the in-memory fake implement only the primitives, and one contract-test
suite runs against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator.store.search import LaneEntry, LanePage
from tpf.records import ExecutionRecord, Status


@dataclass(frozen=True)
class Guard:
    """The condition a replacing write is made under, as named parts.

    Timeline a guard protects (``version`` is read at t0, the write lands at t1)::

        t0 read v=7 ──────────── t1 write "v=7 AND ..." ── ok only if nobody changed the record
                    ▲ another coordinator commits v=8: our write fails with the current record
                    ▲ a heartbeat renews the deadline (v stays 7): ``due_by_ms`` catches it
    """

    version: int
    """Fencing token: the record must still be the one this change was computed from."""
    statuses: frozenset[Status]
    """States this change may start from."""
    transition_key: str | None = None
    """The transition the change belongs to (results, heartbeats)."""
    due_by_ms: int | None = None
    """Only if the record's deadline/due time has passed (sweeper actions)."""
    await_unit_id: str | None = None
    """The await unit a completion belongs to."""


@dataclass(frozen=True)
class DueEntry:
    """What the keys-only due index tells a sweeper: which record to read, and its wake time."""

    tenant_id: str
    execution_id: str
    wake_at_ms: int


@dataclass(frozen=True)
class Page:
    records: list[ExecutionRecord]
    cursor: str | None


class ExecutionTable(Protocol):
    async def insert(self, record: ExecutionRecord) -> None:
        """Create; raises ``AlreadyExists`` carrying the current record."""

    async def replace(self, record: ExecutionRecord, guard: Guard) -> None:
        """Overwrite under ``guard``; raises ``StaleRecord`` (with current) or ``NotFound``."""

    async def renew(
        self, tenant_id: str, execution_id: str, *, transition_key: str, due_at_ms: int
    ) -> None:
        """Extend a running transition's deadline without changing ``version``."""

    async def get(
        self, tenant_id: str, execution_id: str, *, consistent: bool = True
    ) -> ExecutionRecord | None:
        """The record; ``consistent=False`` reads it eventually consistently (half the RRU),
        for what never changes once it is written (its pipeline, contract, release)."""

    async def due(self, shard: str, *, now_ms: int, limit: int) -> list[DueEntry]:
        """Records of one shard whose wake time is at or before ``now_ms``."""

    async def rewake(self, record: ExecutionRecord, *, drop: bool = False) -> bool:
        """Move the wake time the sweeper found ``record`` at to its due time as it is now (a
        heartbeat may have moved it), or with ``drop`` remove it from a parked record; only if
        no one moved the wake time meanwhile. The version stays. False when it had moved."""

    async def lane(
        self, lane: str, *, since_ms: int, until_ms: int, after: LaneEntry | None, limit: int
    ) -> LanePage:
        """Newest first, up to ``limit`` entries of one search lane created in
        [``since_ms``, ``until_ms``), after ``after`` (a Query on the keys-only search index)."""

    async def get_many(self, tenant_id: str, execution_ids: Sequence[str]) -> list[ExecutionRecord]:
        """The records of ``execution_ids`` that exist, in that order (BatchGetItem)."""

    async def add_search_keys(self, record: ExecutionRecord) -> bool:
        """Give a record written before the search index its lane, unless its status moved on
        or it has one already (then False); nothing else of the item changes."""

    async def page(
        self,
        *,
        statuses: Iterable[Status] | None = None,
        pipeline_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Operator listing (a Scan: never on a hot path)."""
