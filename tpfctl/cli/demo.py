"""``tpf demo``: the main job. A coordinator, two workers and a payment provider mock, as
separate processes, drive a batch of orders to completion on the embedded substrate, then one
restaurant approval (auto-approved) and one CSV payments upload, and report what it cost."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tpf.accounting import RequestLedger
from tpf.codec import encode_envelope
from tpf.substrate import open_clients
from tpfctl.cli import references
from tpfctl.cli.common import out
from tpfctl.cli.tables import Column, short_id, table
from tpfctl.stack import OwnedStack, StackSpec, owned_stack

app = typer.Typer()

PIPELINE = "org.example.orders"
TERMINAL = {"SUCCEEDED", "FAILED", "DLQ"}


@app.command()
def demo(
    substrate: Annotated[str, typer.Option(help="embedded or localstack.")] = "embedded",
    executions: Annotated[int, typer.Option(min=1, max=500)] = 12,
    workers: Annotated[int, typer.Option(min=1, max=8)] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every execution.")] = 60.0,
) -> None:
    """Run the example pipeline end to end and print what happened and what it cost."""
    started = time.monotonic()
    spec = StackSpec(
        substrate=substrate,
        stack="demo",
        profile="test",
        workers=workers,
        provider_mock=("--rate", "500"),
    )
    with out.status(f"starting the {substrate} substrate, a coordinator and {workers} workers"):
        stack_cm = owned_stack(spec)
        stack = stack_cm.__enter__()
    try:
        out.print(
            f"[bold]stack up[/bold] in {time.monotonic() - started:.1f}s: API {stack.api_url}, "
            f"substrate {stack.endpoints.dynamodb or 'AWS'}, "
            f"{len(stack.fleet.members)} processes (logs in {stack.fleet.workdir})"
        )
        ids = _submit(stack, executions)
        records = _watch(stack, ids, timeout)
        results = _results(stack, ids)
        with out.status("one restaurant approval, approved through the API"):
            approval = references.approve_one(stack, "demo", timeout)
        with out.status("one payments CSV, uploaded to the inbox bucket"):
            payments = references.upload_one(stack, timeout)
        stack.fleet.stop_all()
        ledgers = [
            json.loads(m.ledger_path.read_text())
            for m in stack.fleet.members
            if m.ledger_path.exists()
        ]
    finally:
        stack_cm.__exit__(None, None, None)
    _report(records, results, RequestLedger.merge(ledgers), executions)
    _report_references(approval, payments)
    out.print(f"demo finished in {time.monotonic() - started:.1f}s")
    ended = [*(r["status"] for r in records.values()), approval["status"], payments["status"]]
    if any(status != "SUCCEEDED" for status in ended):
        raise typer.Exit(1)


def _client(stack: OwnedStack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {stack.control_plane_token}"},
        timeout=10,
    )


def _submit(stack: OwnedStack, count: int) -> list[str]:
    ids = []
    with _client(stack) as api:
        for i in range(count):
            order = {
                "orderId": f"order-{i + 1:03d}",
                "amountCents": 1_000 + 250 * i,
                "customer": ["Ada", "Grace", "Edsger", "Barbara"][i % 4],
                "flaky": i % 4 == 0,  # every fourth order fails once, to show a retry
            }
            response = api.post(
                "/tpf/control-plane/tenants/demo/executions",
                json={
                    "pipelineId": PIPELINE,
                    "inputShape": "UNI",
                    "inputPayload": encode_envelope("examples.orders.OrderIn", order),
                    "idempotencyKey": f"demo-{uuid.uuid4().hex}",
                    "outputStreaming": False,
                },
            )
            response.raise_for_status()
            ids.append(response.json()["executionId"])
    return ids


def _watch(stack: OwnedStack, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Follow progress by reading the executions table from this process, whose requests are
    not part of the fleet's accounting (a status call per execution would be)."""
    wanted = set(ids)
    records: dict[str, dict[str, Any]] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=out) as progress:
        task = progress.add_task("executions", total=len(ids), counts="")
        while time.monotonic() < deadline:
            for record in asyncio.run(_table_snapshot(stack)):
                if record["executionId"] in wanted:
                    records[record["executionId"]] = record
            counts = Counter(r["status"] for r in records.values())
            done = sum(counts[s] for s in TERMINAL)
            progress.update(
                task,
                completed=done,
                counts="  ".join(f"{s} {n}" for s, n in sorted(counts.items())),
            )
            if done == len(ids):
                break
            time.sleep(0.2)
    return records


async def _table_snapshot(stack: OwnedStack) -> list[dict[str, Any]]:
    from coordinator.api import status_body
    from coordinator.store import ExecutionStore
    from coordinator.store.dynamodb import DynamoExecutionTable

    ledger = RequestLedger()  # kept apart from the fleet's figures
    async with open_clients(stack.settings, endpoints=stack.endpoints, ledger=ledger) as aws:
        store = ExecutionStore(
            DynamoExecutionTable(aws.dynamodb, stack.settings.resource("executions"), shards=1)
        )
        records: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await store.page(pipeline_id=PIPELINE, limit=500, cursor=cursor)
            records.extend(status_body(r) for r in page.records)
            if (cursor := page.cursor) is None:
                return records


def _results(stack: OwnedStack, ids: list[str]) -> dict[str, str]:
    summaries = {}
    with _client(stack) as api:
        for execution_id in ids:
            body = api.get(
                f"/tpf/control-plane/tenants/demo/executions/{execution_id}/result"
            ).json()
            payload = body.get("resultPayload")
            summaries[execution_id] = (
                json.loads(payload["payload"]).get("summary", "") if payload else ""
            )
    return summaries


def _report(
    records: dict[str, dict[str, Any]], results: dict[str, str], ledger: dict[str, Any], count: int
) -> None:
    rows = [
        [
            short_id(eid),
            r["status"],
            r["attempt"],
            r["version"],
            r.get("errorCode") or "",
            results.get(eid, ""),
        ]
        for eid, r in records.items()
    ]
    columns: list[Column | str] = ["id", Column("status", whole=True), "attempt", "version"]
    columns += ["last error", "result"]
    table("executions", columns, rows)
    requests = ledger["requests"]
    total = sum(sum(ops.values()) for ops in requests.values())
    op_rows = [
        [service, op, n, f"{n / count:.1f}"]
        for service, ops in sorted(requests.items())
        for op, n in sorted(ops.items(), key=lambda kv: -kv[1])
    ]
    table(
        f"AWS requests of all processes: {total} in all, {total / count:.1f} per execution",
        ["service", "operation", "requests", "per execution"],
        op_rows,
    )
    ddb = ledger["dynamodb"]
    wru = ddb["wru"]
    out.print(
        f"DynamoDB write capacity per execution: {wru['table'] / count:.1f} WRU on tables, "
        f"{wru['indexes'] / count:.1f} on indexes (exact on DynamoDB Local; moto's figures are "
        f"not); {ddb['failed_conditional_writes']} failed conditional writes (fenced races). "
        f"SQS billed chunks: {ledger['sqs']['billed_chunks']}. Idle long polls and sweeps are "
        "included, so the per-execution figures fall as the batch grows."
    )


def _report_references(approval: dict[str, Any], payments: dict[str, Any]) -> None:
    decided = approval.get("result") or {}
    out.print(
        f"[bold]restaurant approval[/bold] {approval['executionId'][:8]}: {approval['status']} "
        f"{decided.get('outcome', approval.get('errorCode') or '')} — {decided.get('summary', '')}"
    )
    report = payments.get("result") or {}
    out.print(
        f"[bold]CSV payments[/bold] {payments['executionId'][:8]}: {payments['status']} "
        f"{report.get('lines', 0)} lines: {report.get('approved', 0)} approved, "
        f"{report.get('rejected', 0)} rejected by the provider, {report.get('invalid', 0)} "
        f"invalid → s3://{report.get('outputBucket')}/{report.get('outputKey')}"
    )
    if payments.get("output"):
        out.print(payments["output"].rstrip(), markup=False, highlight=False)
