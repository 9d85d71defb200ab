"""Recent state changes of every execution, newest first, from the history table.

    scripts/recent-transitions [--since-minutes 60] [--status FAILED] [--limit 50] [--json]

The history table holds an entry per state change (previous and new status, step, attempt,
actor, reason), while an execution record keeps only its latest change (``ua``), so history is
what can show a sequence. It is keyed by execution and has no index by time: this is a
paginated Scan filtered on the change time, then sorted. History entries are written just after
the change, off the commit path, and with ``TPF_HISTORY=false`` only operator actions are kept.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

import typer
from boto3.dynamodb.conditions import Attr

from scripts.ops import items
from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import all_items, load_settings, table
from tpf.records import Status

GROUP_SPAN_MS = 60_000
"""Wider than any item's span: its changes follow each other within ``HOLD_S`` (2 s)."""
COLUMNS = (
    "atEpochMs",
    "tenantId",
    "executionId",
    "version",
    "previousStatus",
    "status",
    "stepIndex",
    "attempt",
    "errorCode",
    "actor",
    "reason",
)


def recent_transitions(
    since_minutes: Annotated[
        float, typer.Option(min=0, help="Only changes of the last this many minutes.")
    ] = 60,
    status: Annotated[
        list[Status] | None, typer.Option(help="Only changes into this status.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest this many.")] = 50,
    as_json: Json = False,
) -> None:
    """List the newest state changes across executions."""
    since_ms = int((time.time() - timedelta(minutes=since_minutes).total_seconds()) * 1000)
    # An item holds a few consecutive changes made within seconds of its first (``at``): read
    # a little further back, then keep the changes asked for.
    recent = Attr("at").gte(since_ms - GROUP_SPAN_MS)
    history = table(load_settings(), "history")
    wanted = {s.value for s in status or Status}
    changes = [
        change
        for i in all_items(history.scan, FilterExpression=recent)
        for change in items.changes(i)
        if change["atEpochMs"] >= since_ms and change["status"] in wanted
    ]
    changes.sort(key=lambda c: (c["atEpochMs"], c["version"]), reverse=True)
    changes = changes[:limit]
    if as_json:
        print_json(changes)
    else:
        print_table(f"{len(changes)} change(s) since {items.when(since_ms)}", changes, COLUMNS)


def main() -> None:
    run(recent_transitions)
