"""How many executions are in each status, overall or per pipeline.

    scripts/count-executions [--by-pipeline] [--pipeline org.example.orders] [--json]

A paginated Scan that keeps only the status and pipeline of each record: no index counts by
status, and the projection saves bandwidth, not capacity (a Scan pays for whole items read).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer
from boto3.dynamodb.conditions import Attr

from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import all_items, load_settings, table
from tpf.records import Status


def _in_lifecycle_order(status: str) -> int:
    order = [s.value for s in Status]
    return order.index(status) if status in order else len(order)


def count_executions(
    by_pipeline: Annotated[
        bool, typer.Option("--by-pipeline", help="One count per pipeline and status.")
    ] = False,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline id.")] = None,
    as_json: Json = False,
) -> None:
    """Count executions by status."""
    scan: dict[str, Any] = {"ProjectionExpression": "st, p"}
    if pipeline:
        scan["FilterExpression"] = Attr("p").eq(pipeline)
    executions = table(load_settings(), "executions")
    counts = Counter((i["p"], i["st"]) for i in all_items(executions.scan, **scan))
    ordered = sorted(counts, key=lambda k: (k[0], _in_lifecycle_order(k[1])))

    if by_pipeline:
        nested: dict[str, dict[str, int]] = {}
        for pipeline_id, status in ordered:
            nested.setdefault(pipeline_id, {})[status] = counts[pipeline_id, status]
        if as_json:
            print_json(nested)
            return
        rows = [
            {"pipelineId": p, "status": s, "count": n}
            for p, by_status in nested.items()
            for s, n in by_status.items()
        ]
        print_table(None, rows, ("pipelineId", "status", "count"))
        return

    totals: Counter[str] = Counter()
    for (_, status), n in counts.items():
        totals[status] += n
    overall = {s: totals[s] for s in sorted(totals, key=_in_lifecycle_order)}
    if as_json:
        print_json(overall)
        return
    rows = [{"status": s, "count": n} for s, n in overall.items()]
    rows.append({"status": "total", "count": sum(overall.values())})
    print_table(None, rows, ("status", "count"))


def main() -> None:
    run(count_executions)
