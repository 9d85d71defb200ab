"""``tpf submit``, ``tpf status``, ``tpf executions list`` and ``tpf executions count``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tpf.codec import encode_envelope
from tpf.errors import InvalidInput
from tpf.records import MAX_EPOCH_MS, Status
from tpf.settings import Settings
from tpfctl.cli.common import Api, ApiCallFailed, out, print_json
from tpfctl.cli.tables import Column, Wide, build_table

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
    execution_id: Annotated[str, typer.Argument(help="The execution's id, whole.")],
    history: Annotated[bool, typer.Option(help="Also show every state change so far.")] = False,
    tenant: Tenant = "default",
    wide: Wide = False,
    as_json: Json = False,
) -> None:
    """Show one execution's status (and its result once it has one); while it waits on an
    await, how many of the await's interactions are answered."""
    api = Api(Settings())
    base = f"/tpf/control-plane/tenants/{tenant}/executions/{execution_id}"
    record = api.call("GET", base)
    waited_on = awaited(api, base) if record["status"] == Status.WAITING_EXTERNAL else None
    result = api.call("GET", f"{base}/result")
    changes = api.call("GET", f"{base}/history") if history else None
    if as_json:
        extra = {"history": changes} if history else {}
        if waited_on is not None:
            extra["await"] = waited_on
        print_json({**record, "result": result["resultPayload"], **extra})
        return
    out.print(fields(record, result["resultPayload"], waited_on))
    if changes is not None:
        out.print(history_table(changes, wide=wide))


def awaited(api: Api, base: str) -> dict[str, Any] | None:
    """The progress of the await the execution waits on; None if it has none (yet)."""
    try:
        found: dict[str, Any] = api.call("GET", f"{base}/await")
    except ApiCallFailed as exc:
        if exc.status != 404:  # 404: the await is not open yet, or the execution moved on
            raise
        return None
    return found


def answered(progress: dict[str, Any]) -> str:
    """'confirm: 412 of 70,867 answered': the await step, and its interactions answered."""
    counted = f"{progress['answered']:,} of {progress['total']:,} answered"
    return f"{progress['stepId']}: {counted}"


def fields(
    record: dict[str, Any], result: dict[str, Any] | None, progress: dict[str, Any] | None
) -> Table:
    rows = [[k, v] for k, v in record.items() if v is not None]
    if progress is not None:
        rows.append(["await", answered(progress)])
    if result:
        rows.append(["result", result["payload"]])
    columns = [Column("field", whole=True), Column("value")]
    return build_table(f"execution {record['executionId']}", columns, rows, wide=True)


HISTORY = [
    Column("version"),
    Column("at"),
    Column("from", whole=True, wide=True),
    Column("status", whole=True),
    Column("step"),
    Column("attempt", wide=True),
    Column("error"),
    Column("actor", wide=True),
    Column("reason", wide=True),
]


def history_table(changes: list[dict[str, Any]], *, wide: bool) -> Table:
    """One row per state change; who did it and why with ``--wide``."""
    rows = [
        [
            c["version"],
            _moment(c["atEpochMs"], wide=wide),
            c["previousStatus"],
            c["status"],
            c["stepIndex"],
            c["attempt"],
            c["errorCode"],
            c["actor"],
            c["reason"],
        ]
        for c in changes
    ]
    return build_table("history", HISTORY, rows, wide=wide)


def _moment(epoch_ms: int, *, wide: bool) -> str:
    """Local time; to the millisecond with ``--wide``, else to the second without the year."""
    moment = datetime.fromtimestamp(epoch_ms / 1000)
    return moment.isoformat(timespec="milliseconds") if wide else moment.strftime("%m-%d %H:%M:%S")


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
    wide: Wide = False,
    as_json: Json = False,
) -> None:
    """List a tenant's executions, newest first (Queries on the search index, no Scan).

    Ids are shortened to 8 characters; --wide shows them whole, with every column."""
    query = _query(tenant, status, pipeline, error_code, since, until)
    records, more = asyncio.run(_search(Settings(), query, limit))
    if as_json:
        print_json(records)
        return
    title = f"{len(records)}{'+' if more else ''} execution(s) of tenant {tenant}, newest first"
    out.print(listing(title, records, wide=wide))


LISTING = {
    "executionId": Column("execution", identifier=True),
    "status": Column("status", whole=True),
    "stepIndex": Column("step"),
    "pipelineId": Column("pipeline"),
    "attempt": Column("attempt", wide=True),
    "version": Column("version", wide=True),
    "errorCode": Column("error"),
}


def listing(title: str, records: list[dict[str, Any]], *, wide: bool) -> Table:
    rows = [[r.get(k) for k in LISTING] for r in records]
    return build_table(title, list(LISTING.values()), rows, wide=wide)


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
