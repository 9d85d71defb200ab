"""Executions by status and pipeline, most recently changed first.

    scripts/list-executions --status FAILED --status DLQ --pipeline org.example.orders --json

The executions table's one index is the sparse due-work index, which holds neither the pipeline
nor settled executions, so this is a Scan with a filter, read page by page. A filter applies
after the read (each page costs what it reads, matching or not): an operator's look, never a hot
path. Reading stops once ``--limit`` executions matched, so when more match, the ones shown are
the first found, not necessarily the newest.
"""

from __future__ import annotations

from functools import reduce
from itertools import islice
from operator import and_
from typing import Annotated

import typer
from boto3.dynamodb.conditions import Attr

from scripts.ops import items
from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import all_items, load_settings, table
from tpf.records import Status

COLUMNS = (
    "executionId",
    "tenantId",
    "pipelineId",
    "status",
    "stepIndex",
    "attempt",
    "version",
    "errorCode",
    "updatedAtEpochMs",
)


def list_executions(
    status: Annotated[
        list[Status] | None, typer.Option(help="Only this status (repeatable).")
    ] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline id.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Stop after this many matches.")] = 100,
    as_json: Json = False,
) -> None:
    """List executions straight from the executions table (a paginated Scan)."""
    wanted = []
    if status:
        wanted.append(Attr("st").is_in([s.value for s in status]))
    if pipeline:
        wanted.append(Attr("p").eq(pipeline))
    if tenant:
        wanted.append(Attr("pk").begins_with(f"{tenant}#"))
    scan = {"FilterExpression": reduce(and_, wanted)} if wanted else {}

    executions = table(load_settings(), "executions")
    found = [items.execution(i) for i in islice(all_items(executions.scan, **scan), limit)]
    found.sort(key=lambda e: e["updatedAtEpochMs"], reverse=True)
    if as_json:
        print_json(found)
    else:
        print_table(f"{len(found)} execution(s)", found, COLUMNS)


def main() -> None:
    run(list_executions)
