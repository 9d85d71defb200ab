"""One execution: its record, its await unit with the interactions, and its history.

    scripts/show-execution 5f0c...e1 --tenant acme [--all-awaits] [--json]

Every read is a key lookup (GetItem or Query) once the tenant is known. Without ``--tenant`` the
record is found by a Scan for its id, since tenant and id together form the key. The record names
only its current await unit; ``--all-awaits`` also finds finished ones, by a Scan of the awaits
table (units are keyed by their own id, and no index leads from an execution to them).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from boto3.dynamodb.conditions import Attr, Key

from scripts.ops import items
from scripts.ops.cli import Json, print_json, print_table, run
from scripts.ops.connection import all_items, load_settings, table
from tpf.errors import NotFound

UNIT_COLUMNS = ("unitId", "stepId", "transport", "status", "done", "total", "deadlineEpochMs")
INTERACTION_COLUMNS = (
    "interactionId",
    "stepId",
    "status",
    "actor",
    "createdAtEpochMs",
    "completedAtEpochMs",
)
HISTORY_COLUMNS = (
    "version",
    "atEpochMs",
    "previousStatus",
    "status",
    "stepIndex",
    "attempt",
    "workerId",
    "errorCode",
    "actor",
    "reason",
)


def _record(executions: Any, execution_id: str, tenant: str | None) -> dict[str, Any]:
    if tenant is not None:
        found = executions.get_item(Key={"pk": f"{tenant}#{execution_id}"}, ConsistentRead=True)
        item = found.get("Item")
    else:
        # Ids are UUIDs, unique across tenants; ends_with does not exist, contains does.
        scan = all_items(executions.scan, FilterExpression=Attr("pk").contains(f"#{execution_id}"))
        item = next(scan, None)
    if item is None:
        where = f" for tenant {tenant}" if tenant else ""
        raise NotFound(f"no execution {execution_id}{where}")
    return items.execution(item)


def _awaits(awaits: Any, record: dict[str, Any], every: bool) -> list[dict[str, Any]]:
    tenant = record["tenantId"]
    if every:
        found = all_items(
            awaits.scan,
            FilterExpression=Attr("ex").eq(record["executionId"])
            & Attr("pk").begins_with(f"{tenant}#"),
        )
    elif record["awaitUnitId"]:
        # The unit (sk "U", or carried by its one interaction) and its interactions
        # (sk "I#000000", ...) share one partition.
        found = all_items(
            awaits.query,
            KeyConditionExpression=Key("pk").eq(f"{tenant}#{record['awaitUnitId']}"),
            ConsistentRead=True,
        )
    else:
        return []
    return list(found)


def show_execution(
    execution_id: Annotated[str, typer.Argument(help="Execution id.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant id (without it: a Scan).")] = None,
    all_awaits: Annotated[
        bool, typer.Option("--all-awaits", help="Also finished await units (a Scan).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Show an execution with its await interactions and history."""
    settings = load_settings()
    record = _record(table(settings, "executions"), execution_id, tenant)
    stored = _awaits(table(settings, "awaits"), record, all_awaits)
    units = [items.await_unit(i) for i in stored if i["sk"] == "U" or "un" in i]
    interactions = [items.interaction(i) for i in stored if i["sk"].startswith("I#")]
    units.sort(key=lambda u: u["createdAtEpochMs"])
    interactions.sort(key=lambda i: (i["createdAtEpochMs"], i["unitId"], i["itemIndex"]))
    history = [
        change
        for i in all_items(
            table(settings, "history").query,
            KeyConditionExpression=Key("pk").eq(f"{record['tenantId']}#{execution_id}"),
        )
        for change in items.changes(i)
    ]
    history.sort(key=lambda c: c["version"])
    if as_json:
        print_json(
            {
                "execution": record,
                "awaitUnits": units,
                "interactions": interactions,
                "history": history,
            }
        )
        return
    fields = [
        {"field": k.removesuffix("EpochMs"), "value": items.when(v) if k.endswith("EpochMs") else v}
        for k, v in record.items()
        if v is not None
    ]
    print_table(f"execution {execution_id}", fields, ("field", "value"))
    if units:
        print_table("await units", units, UNIT_COLUMNS)
    if interactions:
        print_table("interactions", interactions, INTERACTION_COLUMNS)
    print_table("history", history, HISTORY_COLUMNS)


def main() -> None:
    run(show_execution)
