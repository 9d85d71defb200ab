"""Searching a tenant's executions without a Scan: the search index, its lanes, its cursor.

The executions table has a keys-only global secondary index ``search``::

    partition  sl = "<tenant>#F"   the tenant's FAILED and DLQ executions (what operators re-drive)
               sl = "<tenant>#E"   every other execution of the tenant
    sort       ca = creation time, epoch ms: a Query read backwards is newest first

Why these keys, for writes: DynamoDB writes an index entry only when the entry's keys (or
projected attributes) change. Neither the lane nor the creation time changes with a transition,
so an execution's entry is written once when it is submitted (1 WRU) and again only when it
moves between lanes: when it fails (a delete and a put, 2 WRU) and when it is re-driven (2 WRU).
A successful execution pays 1 WRU however many transitions it makes; a key holding the exact
status would move with every change of status (2 WRU each, 8 for an approval).

Why two lanes and no shards, for reads: a page of every status queries both lanes (2 Query
calls) and merges them; more lanes, or shards of a lane, would multiply that. A lane's partition
takes about 1,000 writes a second before DynamoDB throttles it, and since its sort key grows with
time, DynamoDB cannot split it for heat: all of a moment's writes land at its end (time buckets
would not help either, for the same reason). A tenant submitting more than ~1,000 executions a
second, sustained, needs sharded lanes, at 2 Queries per shard and page.

Filters, and what serves them (``SUPPORTED`` is what a refused query is told):

- ``status`` picks the lanes (none: both); the exact status is checked on the records read;
- ``since`` / ``until`` are a range of the sort key (creation time, ``since`` <= t < ``until``);
- ``pipelineId`` and ``errorCode`` are checked on the records read; ``errorCode`` only with
  failures (``status`` FAILED or DLQ, or none), since only their lane has error codes to find.

Each lane's Query reads at most ``limit + 1`` entries and a page holds at most ``limit``
executions: the records of the merged newest entries, read with one BatchGetItem per 100. When
the checks on the records drop some, the page is shorter and still carries a cursor, so the
cost of a page stays O(limit) whatever the table holds. An execution that changes lanes between
two pages (it fails, or is re-driven) may be listed twice or missed, as in any listing of
changing data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tpf.errors import InvalidInput
from tpf.records import FAILURES, MAX_EPOCH_MS, ExecutionRecord, Status, search_lane

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_CHARS = 512

SUPPORTED = (
    "supported filters: none (every execution); status (repeatable); errorCode with status "
    "FAILED or DLQ (or no status); pipelineId, since and until with any of these"
)


class UnsupportedSearch(InvalidInput):
    """A combination of filters the search index does not serve (HTTP 400)."""


@dataclass(frozen=True)
class LaneEntry:
    """One entry of a search lane: what the keys-only index gives back."""

    created_at_ms: int
    execution_id: str


@dataclass(frozen=True)
class LanePage:
    entries: list[LaneEntry]
    """Newest first."""
    more: bool
    """The Query stopped at its limit (DynamoDB's LastEvaluatedKey): entries may follow."""


@dataclass(frozen=True)
class ExecutionQuery:
    tenant_id: str
    statuses: frozenset[Status] = frozenset()
    pipeline_id: str | None = None
    error_code: str | None = None
    since_ms: int = 0
    """Created at or after (epoch ms)."""
    until_ms: int = MAX_EPOCH_MS
    """Created before (epoch ms)."""
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.error_code is not None and not self.statuses <= FAILURES:
            outside = ", ".join(sorted(self.statuses - FAILURES))
            raise UnsupportedSearch(
                f"errorCode is searched among failures only, not status {outside}; {SUPPORTED}",
                pointer="/errorCode",
            )
        if self.since_ms >= self.until_ms:
            raise InvalidInput("since must be before until", pointer="/since")
        if not 1 <= self.limit <= MAX_LIMIT:
            # A page of none would never move its cursor on.
            raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", pointer="/limit")

    @property
    def lanes(self) -> tuple[str, ...]:
        """The index partitions to query, at most two."""
        wanted = self.statuses or (FAILURES if self.error_code else frozenset(Status))
        return tuple(sorted({search_lane(self.tenant_id, s) for s in wanted}))

    def matches(self, record: ExecutionRecord) -> bool:
        """The filters the keys do not check: exact status, pipeline, error code."""
        return (
            (not self.statuses or record.status in self.statuses)
            and (self.error_code is None or record.status in FAILURES)
            and (self.pipeline_id is None or record.pipeline_id == self.pipeline_id)
            and (self.error_code is None or record.error_code == self.error_code)
        )

    def fingerprint(self) -> str:
        """Binds a cursor to its query: a cursor is refused with other filters."""
        fields = [
            self.tenant_id,
            ",".join(sorted(self.statuses)),
            self.pipeline_id or "",
            self.error_code or "",
            str(self.since_ms),
            str(self.until_ms),
        ]
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Positions:
    """Where each lane of a query goes on: after an entry, from the start (None), or done."""

    after: Mapping[str, LaneEntry | None] = field(default_factory=dict)
    done: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SearchPage:
    records: list[ExecutionRecord]
    cursor: str | None


# -- the cursor ------------------------------------------------------------------------------

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_EXECUTION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def encode_cursor(query: ExecutionQuery, positions: Positions) -> str:
    """base64url of ``{"q": fingerprint, "at": {lane: [createdAt, executionId] | null}}``, lanes
    named by their last letter; a lane that is done is left out."""
    at = {
        lane[-1]: None if entry is None else [entry.created_at_ms, entry.execution_id]
        for lane, entry in positions.after.items()
        if lane not in positions.done
    }
    text = json.dumps({"q": query.fingerprint(), "at": at}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, query: ExecutionQuery) -> Positions:
    """The positions a cursor of this query holds; ``InvalidInput`` for anything else."""
    refused = InvalidInput(
        "cursor is not one this search returned (pass nextCursor back unchanged, with the "
        "same filters)",
        pointer="/cursor",
    )
    if not (0 < len(cursor) <= MAX_CURSOR_CHARS and _BASE64URL.match(cursor)):
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise refused from None
    if not isinstance(value, dict) or value.get("q") != query.fingerprint():
        raise refused
    at = value.get("at")
    by_letter = {lane[-1]: lane for lane in query.lanes}
    if not isinstance(at, dict) or not at or not set(at) <= set(by_letter):
        raise refused
    after: dict[str, LaneEntry | None] = {}
    for letter, position in at.items():
        if position is None:
            after[by_letter[letter]] = None
            continue
        if not (
            isinstance(position, list)
            and len(position) == 2
            and type(position[0]) is int
            # DynamoDB refuses a start key outside the Query's range: refuse it first.
            and query.since_ms <= position[0] < query.until_ms
            and isinstance(position[1], str)
            and _EXECUTION_ID.match(position[1])
        ):
            raise refused
        after[by_letter[letter]] = LaneEntry(position[0], position[1])
    done = frozenset(lane for lane in query.lanes if lane not in after)
    return Positions(after, done)


# -- merging lanes ---------------------------------------------------------------------------


def merge(
    pages: Mapping[str, LanePage], positions: Positions, limit: int
) -> tuple[list[LaneEntry], Positions]:
    """The newest ``limit`` entries of the lanes' pages, and where each lane goes on.

    Each lane's own order is kept (DynamoDB orders entries of equal time its own way, and a
    lane resumes after the last entry taken from it); between lanes, the newer entry first.
    """
    taken: list[LaneEntry] = []
    heads = {lane: 0 for lane in pages}
    while len(taken) < limit:
        ready = [lane for lane, i in heads.items() if i < len(pages[lane].entries)]
        if not ready:
            break
        lane = max(ready, key=lambda name: pages[name].entries[heads[name]].created_at_ms)
        taken.append(pages[lane].entries[heads[lane]])
        heads[lane] += 1
    after = dict(positions.after)
    done = set(positions.done)
    for lane, page in pages.items():
        used = heads[lane]
        if used:
            after[lane] = page.entries[used - 1]
        if used == len(page.entries) and not page.more:
            done.add(lane)
    return taken, Positions(after, frozenset(done))


def clamp_limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def statuses_of(values: Iterable[str]) -> frozenset[Status]:
    """``status`` values, repeated or comma-separated; ``InvalidInput`` names a wrong one."""
    wanted = set()
    for value in values:
        for name in value.split(","):
            try:
                wanted.add(Status(name.strip().upper()))
            except ValueError:
                known = ", ".join(Status)
                raise InvalidInput(
                    f"unknown status {name.strip()[:40]!r}; one of {known}", pointer="/status"
                ) from None
    return frozenset(wanted)
