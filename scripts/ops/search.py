"""A tenant's executions, newest first, from the executions table's search index.

The index (``search``, keys only) puts each execution in one of two lanes of its tenant: ``F``
for FAILED and DLQ, ``E`` for every other status; its sort key is the creation time (``ca``).
The layout is ``tpf/records.py``'s; the design and its costs are in ``docs/search.md``. Here the
lanes are read with Queries, merged newest first, and the records behind the entries are read
with BatchGetItem, 100 at a time: what is read is what is shown (plus the filters' misses), never
the whole table.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from boto3.dynamodb.conditions import Key

from scripts.ops.connection import all_items
from tpf.records import CREATED_AT, SEARCH_INDEX, SEARCH_LANE, Status, search_lane

BATCH_GET = 100


def lanes(tenant: str, statuses: Iterable[Status] = ()) -> list[str]:
    """The index partitions holding ``statuses`` (all when none) of ``tenant``."""
    return sorted({search_lane(tenant, s) for s in (list(statuses) or list(Status))})


def newest_first(executions: Any, tenant: str, statuses: Iterable[Status] = ()) -> Iterator[Any]:
    """The index entries (``pk``, ``sl``, ``ca``) of ``tenant``'s lanes, newest first, read a
    page at a time as they are consumed."""
    streams = [
        all_items(
            executions.query,
            IndexName=SEARCH_INDEX,
            KeyConditionExpression=Key(SEARCH_LANE).eq(lane),
            ScanIndexForward=False,
        )
        for lane in lanes(tenant, statuses)
    ]
    return heapq.merge(*streams, key=lambda entry: entry[CREATED_AT], reverse=True)


def records(
    executions: Any, entries: Iterable[Any], *, attributes: tuple[str, ...] = ()
) -> Iterator[Any]:
    """The items behind ``entries`` (only ``attributes`` of them when named), in their order;
    an item deleted meanwhile is skipped."""
    client = executions.meta.client
    pending = iter(entries)
    while chunk := list(islice(pending, BATCH_GET)):
        wanted: dict[str, Any] = {"Keys": [{"pk": e["pk"]} for e in chunk]}
        if attributes:
            names = {f"#a{i}": name for i, name in enumerate(("pk", *attributes))}
            wanted["ProjectionExpression"] = ", ".join(names)
            wanted["ExpressionAttributeNames"] = names
        found: dict[str, Any] = {}
        request = {executions.name: wanted}
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(executions.name, []):
                found[item["pk"]] = item
            request = response.get("UnprocessedKeys") or {}
        yield from (found[e["pk"]] for e in chunk if e["pk"] in found)
