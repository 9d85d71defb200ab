"""A tenant's executions, newest first, by status, pipeline and error code.

    scripts/list-executions --tenant acme --status FAILED --status DLQ --pipeline org.example.orders

Read from the executions table's search index (``scripts/ops/search.py``): the lanes holding
the statuses asked for are queried newest first and the records behind the entries read 100 at
a time; status, pipeline and error code are checked on those records. Reading stops at
``--limit`` matches, or after ``--max-read`` entries when the filters match few (then it says
so), so its cost follows what it shows, never the size of the table.
"""

from __future__ import annotations

import sys
from itertools import islice
from typing import Annotated

import typer

from scripts.ops import items
from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import load_settings, table
from scripts.ops.search import newest_first, records
from tpf.records import Status

COLUMNS = (
    "executionId",
    "pipelineId",
    "status",
    "stepIndex",
    "attempt",
    "version",
    "errorCode",
    "createdAtEpochMs",
)


def list_executions(
    tenant: Annotated[str, typer.Option(help="The tenant whose executions to list.")] = "default",
    status: Annotated[
        list[Status] | None, typer.Option(help="Only this status (repeatable).")
    ] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline id.")] = None,
    error_code: Annotated[str | None, typer.Option(help="Only this error code.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Stop after this many matches.")] = 100,
    max_read: Annotated[
        int, typer.Option(min=1, help="Stop after reading this many executions.")
    ] = 10_000,
    as_json: Json = False,
) -> None:
    """List a tenant's executions, newest first, from the search index (no Scan)."""
    statuses = {s.value for s in status or ()}
    executions = table(load_settings(), "executions")
    entries = islice(newest_first(executions, tenant, status or ()), max_read)
    read = 0
    found = []
    for item in records(executions, entries):
        read += 1
        if (
            (not statuses or item["st"] in statuses)
            and (pipeline is None or item["p"] == pipeline)
            and (error_code is None or item.get("ec") == error_code)
        ):
            found.append(items.execution(item))
            if len(found) == limit:
                break
    if read == max_read and len(found) < limit:
        print(f"stopped after reading {read:,} executions; older ones may match", file=sys.stderr)
    if as_json:
        print_json(found)
    else:
        print_table(f"{len(found)} execution(s) of tenant {tenant}", found, COLUMNS)


def main() -> None:
    run(list_executions)
