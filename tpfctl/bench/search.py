"""Execution search at scale: filtered pages over a tenant of many execution records.

The records (``--search-records``, 100,000 by default) are written straight into the bench
stack's executions table, as the coordinator writes them (``to_item``), with BatchWriteItem:
mostly SUCCEEDED, 1% DLQ under three error codes, 1% FAILED, 3% WAITING_EXTERNAL, three
pipelines, one a minute over the last ~70 days, none of them due (the stack's sweepers leave
them alone). Then 50 pages are read through the store's
``search`` (the route's code without HTTP), cycling over five filter combinations and following
each one's cursor, so later pages are measured too. A page's Queries and the entries they read
are counted on the table: a keys-only Query without a filter reads exactly what it returns, so
that is its ``ScannedCount``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from coordinator.store.search import ExecutionQuery, LaneEntry, LanePage
from tpf.dynamodb import Items
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, Status, new_execution, to_item
from tpf.settings import Settings
from tpf.substrate import Endpoints, open_clients
from tpfctl.bench.session import LazySession

TENANT = "bench-search"
PIPELINES = ("org.example.orders", "org.example.shop", "org.pipelineframework.restaurantapproval")
ERROR_CODES = ("TRANSITION_TIMEOUT", "INVALID_ORDER", "AWAIT_TIMEOUT")
LIMIT = 50
REQUESTS = 50
TARGET_P95_MS = 300.0
MAX_QUERIES = 2
MINUTE_MS = 60_000
WRITERS = 8
"""BatchWriteItem calls in flight while seeding."""


class CountedTable(DynamoExecutionTable):
    """The adapter, counting the Queries of a page and the entries they read."""

    queries = 0
    scanned = 0

    async def lane(
        self, lane: str, *, since_ms: int, until_ms: int, after: LaneEntry | None, limit: int
    ) -> LanePage:
        page = await super().lane(
            lane, since_ms=since_ms, until_ms=until_ms, after=after, limit=limit
        )
        self.queries += 1
        self.scanned += len(page.entries)
        return page


def record(n: int, now_ms: int) -> ExecutionRecord:
    created = now_ms - (n + 1) * MINUTE_MS
    base = new_execution(
        tenant_id=TENANT,
        pipeline_id=PIPELINES[n % len(PIPELINES)],
        idempotency_key=f"bench-{n}",
        contract_version="sha256:" + "ab" * 32,
        release_version="1.0.0",
        input=PayloadRef.of_inline(f'{{"n":{n}}}'),
        now_ms=created,
    )
    settled = {"due_at_ms": None, "version": 3, "attempt": 1, "updated_at_ms": created + 500}
    share = n % 100
    if share == 0:
        code = ERROR_CODES[(n // 100) % len(ERROR_CODES)]
        return base.change(status=Status.DLQ, error_code=code, error_message="bench", **settled)
    if share == 1:
        return base.change(status=Status.FAILED, error_code="INVALID_ORDER", **settled)
    if share < 5:
        return base.change(status=Status.WAITING_EXTERNAL, await_unit_id=f"u-{n}", **settled)
    return base.change(status=Status.SUCCEEDED, result=PayloadRef.of_inline("1"), **settled)


def queries(now_ms: int) -> list[ExecutionQuery]:
    week = 7 * 24 * 60 * MINUTE_MS
    return [
        ExecutionQuery(TENANT, frozenset({Status.DLQ}), limit=LIMIT),
        ExecutionQuery(TENANT, error_code="TRANSITION_TIMEOUT", limit=LIMIT),
        ExecutionQuery(
            TENANT, frozenset({Status.SUCCEEDED}), pipeline_id=PIPELINES[0], limit=LIMIT
        ),
        ExecutionQuery(TENANT, since_ms=now_ms - 2 * week, until_ms=now_ms - week, limit=LIMIT),
        ExecutionQuery(TENANT, limit=LIMIT),
    ]


async def _seed(items: Items, count: int, now_ms: int) -> None:
    batches = asyncio.Queue[list[dict[str, Any]]]()
    for first in range(0, count, 25):
        batch = [to_item(record(n, now_ms), shards=8) for n in range(first, min(first + 25, count))]
        batches.put_nowait(batch)

    async def writer() -> None:
        while not batches.empty():
            await items.put_many(batches.get_nowait())

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def _measure(settings: Settings, endpoints: Endpoints, count: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    async with open_clients(settings, endpoints=endpoints) as aws:
        name = settings.resource("executions")
        began = time.monotonic()
        await _seed(Items(aws.dynamodb, name), count, now_ms)
        seeded_s = time.monotonic() - began
        table = CountedTable(aws.dynamodb, name, shards=settings.due_shards)
        store = ExecutionStore(table)
        mix = queries(now_ms)
        cursors: list[str | None] = [None] * len(mix)
        pages = []
        for n in range(REQUESTS):
            i = n % len(mix)
            table.queries = table.scanned = 0
            started = time.perf_counter()
            page = await store.search(mix[i], cursors[i])
            ms = (time.perf_counter() - started) * 1000
            pages.append((ms, table.queries, table.scanned, len(page.records)))
            cursors[i] = page.cursor
    latencies = sorted(p[0] for p in pages)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    most_queries = max(p[1] for p in pages)
    most_scanned = max(p[2] for p in pages)
    return {
        "benchmark": "search",
        "records": count,
        "seed_seconds": round(seeded_s, 1),
        "requests": REQUESTS,
        "limit": LIMIT,
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(p95, 1),
        "max_queries_per_page": most_queries,
        "max_scanned_per_page": most_scanned,
        "mean_executions_per_page": round(statistics.mean(p[3] for p in pages), 1),
        "target": {
            "p95_ms": TARGET_P95_MS,
            "queries_per_page": MAX_QUERIES,
            "scanned_per_page": 2 * (LIMIT + 1),
        },
        "met": p95 < TARGET_P95_MS
        and most_queries <= MAX_QUERIES
        and most_scanned <= 2 * (LIMIT + 1),
    }


def run(bench: LazySession) -> list[dict[str, Any]]:
    stack, count = bench.get().stack, bench.options.search_records
    print(f"  search: {count} records of tenant {TENANT}", file=sys.stderr)
    return [asyncio.run(_measure(stack.settings, stack.endpoints, count))]
