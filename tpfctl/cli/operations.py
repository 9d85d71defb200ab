"""``tpf redrive`` (one execution, or every one matching ``--where``) and ``tpf cancel``.

Both go through the coordinator's admin API, so the coordinator applies its conditions and
writes the history entry; the actor recorded is ``user@host`` unless ``--actor`` says otherwise.
A bulk re-drive goes a few seconds' worth at a time, so a terminal shows a bar of its progress.
"""

from __future__ import annotations

import getpass
import math
import socket
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import Progress

from tpf.errors import InvalidInput
from tpf.settings import Settings
from tpfctl.cli.common import Api, print_json
from tpfctl.cli.progress import bars, for_people
from tpfctl.cli.tables import Column, table

app = typer.Typer()

Tenant = Annotated[str, typer.Option(help="Tenant id.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Reason = Annotated[str | None, typer.Option(help="Why; kept in the execution's history.")]
Actor = Annotated[str | None, typer.Option(help="Who; defaults to user@host.")]

REQUEST_S = 2
"""Seconds of re-drives (at ``--rate``) asked for in one request of a bulk re-drive."""

# --where keys and the bulk request fields they fill.
WHERE = {
    "pipeline": "pipelineId",
    "status": "status",
    "error": "errorCode",
    "since": "updatedAfterEpochMs",
    "until": "updatedBeforeEpochMs",
}


def default_actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"[:64]


def epoch_ms(value: str, *, what: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (UTC unless it names a zone)."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"--where {what}={value}: not epoch ms or ISO-8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.now().astimezone().tzinfo)
    return int(moment.timestamp() * 1000)


def selection(where: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for clause in where:
        key, eq, value = clause.partition("=")
        if not eq or key not in WHERE:
            raise InvalidInput(
                f"--where {clause!r}: expected KEY=VALUE with KEY one of {', '.join(WHERE)}"
            )
        if key == "status":
            body["status"] = [s.strip().upper() for s in value.split(",")]
        elif key in ("since", "until"):
            body[WHERE[key]] = epoch_ms(value, what=key)
        else:
            body[WHERE[key]] = value
    return body


@app.command()
def redrive(
    execution_id: Annotated[str | None, typer.Argument(help="The execution to re-drive.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Bulk: KEY=VALUE, repeatable; keys pipeline, status (DLQ,FAILED), error, "
            "since, until (epoch ms or ISO-8601)."
        ),
    ] = None,
    expected_version: Annotated[
        int | None, typer.Option(help="Only if the execution is still at this version.")
    ] = None,
    allow_failed: Annotated[bool, typer.Option(help="Also re-drive FAILED executions.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Bulk: list what would be re-driven.")] = False,
    rate: Annotated[float, typer.Option(help="Bulk: re-drives per second.")] = 10.0,
    limit: Annotated[int, typer.Option(help="Bulk: at most this many.")] = 1000,
    reason: Reason = None,
    actor: Actor = None,
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """Queue dead-lettered executions again at their resume point, with a fresh retry budget."""
    if (execution_id is None) == (where is None):
        raise InvalidInput("give either an execution id or --where filters (not both)")
    api = Api(Settings(), admin=True)
    who = actor or default_actor()
    base = f"/tpf/admin/tenants/{tenant}/executions"
    if execution_id is not None:
        body = {
            "expectedVersion": expected_version,
            "reason": reason,
            "allowFailed": allow_failed,
            "actor": who,
        }
        show(api.call("POST", f"{base}/{execution_id}/redrive", json=body), as_json)
        return
    bulk = {
        **selection(where or []),
        "dryRun": dry_run,
        "perSecond": rate,
        "limit": limit,
        "reason": reason,
        "actor": who,
    }
    if allow_failed and "status" not in bulk:
        bulk["status"] = ["DLQ", "FAILED"]
    if dry_run:
        report = api.call("POST", f"{base}/redrive", json=bulk, timeout=30)
    else:
        with bars(wanted=for_people(as_json=as_json)) as progress:
            report = redrive_where(api, f"{base}/redrive", bulk, progress)
    if as_json:
        print_json(report)
        return
    verb = "would re-drive" if report["dryRun"] else "re-drove"
    print(
        f"matched {report['matched']}, {verb} {len(report['executionIds'])}, "
        f"skipped {report['skipped']} (changed meanwhile)"
    )
    for execution in report["executionIds"]:
        print(f"  {execution}")


@app.command()
def cancel(
    execution_id: Annotated[str, typer.Argument()],
    reason: Reason = None,
    actor: Actor = None,
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """End a live execution as FAILED with errorCode CANCELLED; its late results are ignored."""
    api = Api(Settings(), admin=True)
    body = {"reason": reason, "actor": actor or default_actor()}
    path = f"/tpf/admin/tenants/{tenant}/executions/{execution_id}/cancel"
    show(api.call("POST", path, json=body), as_json)


def redrive_where(
    api: Api, route: str, bulk: dict[str, Any], progress: Progress, *, now_ms: int | None = None
) -> dict[str, Any]:
    """Re-drive what ``bulk`` selects a few seconds' worth at a time, so the bar moves; the
    report is the one a single request would give.

    A dry run counts the selection first. Each later request asks for executions last changed
    before this command started: one re-driven (or changed by someone else) meanwhile is not
    selected again, so the requests never re-drive twice nor go round in circles."""
    started = int(time.time() * 1000) if now_ms is None else now_ms
    until = bulk.get("updatedBeforeEpochMs")
    frozen = {**bulk, "updatedBeforeEpochMs": started if until is None else min(until, started)}
    selected = api.call("POST", route, json={**frozen, "dryRun": True}, timeout=30)["matched"]
    step = max(1, math.ceil(bulk["perSecond"] * REQUEST_S))
    report: dict[str, Any] = {"dryRun": False, "matched": 0, "redriven": 0, "skipped": 0}
    report.update(executionIds=[], skippedExecutionIds=[])
    task = progress.add_task("re-driving", total=selected)
    while report["matched"] < selected:
        limit = min(step, selected - report["matched"])
        part = api.call(
            "POST", route, json={**frozen, "limit": limit}, timeout=30 + limit / bulk["perSecond"]
        )
        if not part["matched"]:  # the rest changed since they were counted
            break
        for key in ("matched", "redriven", "skipped", "executionIds", "skippedExecutionIds"):
            report[key] += part[key]
        progress.update(task, completed=report["matched"])
    return report


def show(acted: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(acted)
        return
    rows = [[k, v] for k, v in acted.items() if v is not None]
    columns = [Column("field", whole=True), Column("value")]
    table(f"execution {acted['executionId']}", columns, rows, wide=True)
