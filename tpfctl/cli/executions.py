"""``tpf submit``, ``tpf status``, ``tpf executions list`` and ``tpf executions count``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tpf.codec import encode_envelope
from tpf.errors import InvalidInput
from tpf.records import MAX_EPOCH_MS, Status
from tpf.settings import Settings
from tpfctl.cli.common import Api, print_json, table

if TYPE_CHECKING:
    from coordinator.store.search import ExecutionQuery

app = typer.Typer()
executions = typer.Typer(help="Inspect executions.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option(help="Tenant id.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
def submit(
    pipeline: Annotated[str, typer.Argument(help="Pipeline id, e.g. org.example.orders.")],
    input: Annotated[str, typer.Option("--input", "-i", help="Input document as JSON.")],
    key: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """Submit an execution through the coordinator's API."""
    try:
        value = json.loads(input)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--input is not JSON: {exc.msg}") from exc
    body = {
        "pipelineId": pipeline,
        "inputShape": "UNI",
        "inputPayload": encode_envelope(pipeline, value),
        "idempotencyKey": key,
        "outputStreaming": False,
    }
    response = Api(Settings()).call(
        "POST", f"/tpf/control-plane/tenants/{tenant}/executions", json=body
    )
    if as_json:
        print_json(response)
    else:
        note = " (duplicate: already submitted)" if response["duplicate"] else ""
        print(f"{response['executionId']}{note}")


@app.command()
def status(
    execution_id: Annotated[str, typer.Argument()],
    history: Annotated[bool, typer.Option(help="Also show every state change so far.")] = False,
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """Show one execution's status (and its result once it has one)."""
    api = Api(Settings())
    base = f"/tpf/control-plane/tenants/{tenant}/executions/{execution_id}"
    record = api.call("GET", base)
    result = api.call("GET", f"{base}/result")
    changes = api.call("GET", f"{base}/history") if history else None
    if as_json:
        extra = {"history": changes} if history else {}
        print_json({**record, "result": result["resultPayload"], **extra})
        return
    rows = [[k, v] for k, v in record.items() if v is not None]
    if result["resultPayload"]:
        rows.append(["result", result["resultPayload"]["payload"]])
    table(f"execution {execution_id}", ["field", "value"], rows)
    if changes is not None:
        columns = ["version", "at", "previousStatus", "status", "stepIndex", "attempt"]
        table(
            "history",
            [*columns, "errorCode", "actor", "reason"],
            [
                [
                    c["version"],
                    datetime.fromtimestamp(c["atEpochMs"] / 1000).isoformat(
                        timespec="milliseconds"
                    ),
                    *(c[k] for k in columns[2:]),
                    c["errorCode"],
                    c["actor"],
                    c["reason"],
                ]
                for c in changes
            ],
        )


Since = Annotated[
    str | None,
    typer.Option(help="Created at or after: epoch ms or ISO-8601 (UTC unless it says)."),
]
Until = Annotated[str | None, typer.Option(help="Created before: epoch ms or ISO-8601.")]
Statuses = Annotated[list[Status] | None, typer.Option(help="Only these statuses (repeatable).")]
Pipeline = Annotated[str | None, typer.Option(help="Only this pipeline.")]
ErrorCode = Annotated[str | None, typer.Option(help="Only failures with this error code.")]
COUNT_CAP = 1_000
"""Counting stops here ("1,000+"): a count reads what it counts, so it is capped, not a Scan."""


@executions.command("list")
def list_executions(
    status: Statuses = None,
    pipeline: Pipeline = None,
    error_code: ErrorCode = None,
    since: Since = None,
    until: Until = None,
    tenant: Tenant = "default",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Json = False,
) -> None:
    """List a tenant's executions, newest first (Queries on the search index, no Scan)."""
    query = _query(tenant, status, pipeline, error_code, since, until)
    records, more = asyncio.run(_search(Settings(), query, limit))
    if as_json:
        print_json(records)
        return
    columns = ["executionId", "pipelineId", "status", "stepIndex", "attempt", "version"]
    columns.append("errorCode")
    title = f"{len(records)}{'+' if more else ''} execution(s) of tenant {tenant}, newest first"
    table(title, columns, [[r[c] for c in columns] for r in records])


@executions.command("count")
def count_executions(
    status: Statuses = None,
    pipeline: Pipeline = None,
    error_code: ErrorCode = None,
    since: Since = None,
    until: Until = None,
    tenant: Tenant = "default",
) -> None:
    """Count a tenant's executions, up to 1,000 ("1,000+" beyond)."""
    query = _query(tenant, status, pipeline, error_code, since, until)
    records, more = asyncio.run(_search(Settings(), query, COUNT_CAP))
    print(f"{len(records):,}{'+' if more else ''}")


def _query(
    tenant: str,
    statuses: list[Status] | None,
    pipeline: str | None,
    error_code: str | None,
    since: str | None,
    until: str | None,
) -> ExecutionQuery:
    # Imported here: the coordinator's store is not every command's to load at start.
    from coordinator.search_params import instant
    from coordinator.store.search import MAX_LIMIT, ExecutionQuery

    return ExecutionQuery(
        tenant,
        frozenset(statuses or ()),
        pipeline_id=pipeline,
        error_code=error_code,
        since_ms=instant(since, "since", default=0),
        until_ms=instant(until, "until", default=MAX_EPOCH_MS),
        limit=MAX_LIMIT,
    )


async def _search(
    settings: Settings, query: ExecutionQuery, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` executions of ``query``, page after page, and whether more match."""
    from coordinator.api import status_body
    from coordinator.store import ExecutionStore
    from coordinator.store.dynamodb import DynamoExecutionTable
    from tpf.substrate import open_clients

    async with open_clients(settings) as aws:
        store = ExecutionStore(
            DynamoExecutionTable(
                aws.dynamodb, settings.resource("executions"), shards=settings.due_shards
            )
        )
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await store.search(query, cursor)
            found.extend(status_body(r) for r in page.records)
            cursor = page.cursor
            if cursor is None or len(found) > limit:
                return found[:limit], len(found) > limit or cursor is not None
