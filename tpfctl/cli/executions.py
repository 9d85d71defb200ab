"""``tpf submit``, ``tpf status`` and ``tpf executions list``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

import typer

from tpf.codec import encode_envelope
from tpf.errors import InvalidInput
from tpf.records import Status
from tpf.settings import Settings
from tpfctl.cli.common import Api, print_json, table

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


@executions.command("list")
def list_executions(
    status: Annotated[list[Status] | None, typer.Option(help="Only these statuses.")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Json = False,
) -> None:
    """List executions straight from the executions table (a Scan: an operator tool)."""
    records = asyncio.run(_list(Settings(), status, pipeline, limit))
    if as_json:
        print_json([r for r in records])
        return
    columns = [
        "executionId",
        "tenantId",
        "pipelineId",
        "status",
        "stepIndex",
        "attempt",
        "version",
        "errorCode",
    ]
    table(None, columns, [[r[c] for c in columns] for r in records])


async def _list(
    settings: Settings, statuses: list[Status] | None, pipeline: str | None, limit: int
) -> list[dict[str, Any]]:
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
        while len(found) < limit:
            page = await store.page(
                statuses=statuses, pipeline_id=pipeline, limit=200, cursor=cursor
            )
            found.extend(status_body(r) for r in page.records)
            cursor = page.cursor
            if cursor is None:
                break
        return sorted(found, key=lambda r: r["updatedAtEpochMs"], reverse=True)[:limit]
