"""How many of a tenant's executions are in each status, overall or per pipeline, up to a cap.

    scripts/count-executions --tenant acme [--by-pipeline] [--pipeline org.example.orders] [--json]

Counting reads what it counts, so it is capped rather than a Scan of the table: the newest
``--cap`` executions (1,000) are read from the search index (``scripts/ops/search.py``), only
their status and pipeline. When the tenant has more, the table shows each count and the total
with a ``+`` ("1,000+": at least that many), and ``--json`` adds ``"capped": true``.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from typing import Annotated, Any

import typer

from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import load_settings, table
from scripts.ops.search import newest_first, records
from tpf.records import Status

CAP = 1_000


def _in_lifecycle_order(status: str) -> int:
    order = [s.value for s in Status]
    return order.index(status) if status in order else len(order)


def count_executions(
    tenant: Annotated[str, typer.Option(help="The tenant whose executions to count.")] = "default",
    by_pipeline: Annotated[
        bool, typer.Option("--by-pipeline", help="One count per pipeline and status.")
    ] = False,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline id.")] = None,
    cap: Annotated[int, typer.Option(min=1, help="Count at most this many executions.")] = CAP,
    as_json: Json = False,
) -> None:
    """Count a tenant's executions by status (the newest ``--cap`` of them)."""
    executions = table(load_settings(), "executions")
    entries = list(islice(newest_first(executions, tenant), cap + 1))
    capped = len(entries) > cap
    counts = Counter(
        (i["p"], i["st"])
        for i in records(executions, entries[:cap], attributes=("st", "p"))
        if pipeline is None or i["p"] == pipeline
    )
    ordered = sorted(counts, key=lambda k: (k[0], _in_lifecycle_order(k[1])))
    more = "+" if capped else ""

    if by_pipeline:
        nested: dict[str, dict[str, int]] = {}
        for pipeline_id, status in ordered:
            nested.setdefault(pipeline_id, {})[status] = counts[pipeline_id, status]
        if as_json:
            print_json({**nested, **({"capped": True} if capped else {})})
            return
        rows = [
            {"pipelineId": p, "status": s, "count": f"{n:,}{more}"}
            for p, by_status in nested.items()
            for s, n in by_status.items()
        ]
        print_table(None, rows, ("pipelineId", "status", "count"))
        return

    totals: Counter[str] = Counter()
    for (_, status), n in counts.items():
        totals[status] += n
    overall: dict[str, Any] = {s: totals[s] for s in sorted(totals, key=_in_lifecycle_order)}
    if as_json:
        print_json({**overall, **({"capped": True} if capped else {})})
        return
    rows = [{"status": s, "count": f"{n:,}{more}"} for s, n in overall.items()]
    rows.append({"status": "total", "count": f"{sum(overall.values()):,}{more}"})
    print_table(None, rows, ("status", "count"))


def main() -> None:
    run(count_executions)
