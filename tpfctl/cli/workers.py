"""``tpf workers``: the worker registry, through the coordinator's admin API.

Workers register and heartbeat by themselves (signed presence reports); an operator lists
them, asks one to drain, and registers a Lambda worker once at deploy time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from tpf.settings import Settings
from tpfctl.cli.common import Api, out, print_json
from tpfctl.cli.tables import Column, Wide, build_table

app = typer.Typer(no_args_is_help=True, help="List, drain and register transition workers.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TENANT = "default"
"""Workers belong to a pipeline, not a tenant; TPF's routes carry one anyway."""


def _base(pipeline_id: str) -> str:
    return f"/tpf/admin/tenants/{TENANT}/pipelines/{pipeline_id}/workers"


def _seen(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds")


@app.command("list")
def list_workers(
    pipeline_id: Annotated[str, typer.Argument(help="Pipeline id, e.g. org.example.greeting.")],
    wide: Wide = False,
    as_json: Json = False,
) -> None:
    """Every registered worker of the pipeline, with its state (--wide: how to reach it)."""
    workers: list[dict[str, Any]] = Api(Settings(), admin=True).call("GET", _base(pipeline_id))
    if as_json:
        print_json(workers)
        return
    out.print(worker_table(pipeline_id, workers, wide=wide))


WORKERS = [
    Column("worker"),
    Column("release"),
    Column("state", whole=True),
    Column("last heartbeat"),
    Column("protocol", wide=True),
    Column("endpoint", wide=True),
]


def worker_table(pipeline_id: str, workers: list[dict[str, Any]], *, wide: bool) -> Table:
    rows = [
        [
            w["workerId"],
            w["releaseVersion"],
            w["state"],
            _seen(w.get("lastHeartbeatAtEpochMs")),
            w["protocol"],
            w.get("endpoint") or w.get("functionName"),
        ]
        for w in workers
    ]
    return build_table(f"workers of {pipeline_id}", WORKERS, rows, wide=wide)


@app.command()
def drain(
    pipeline_id: Annotated[str, typer.Argument()],
    worker_id: Annotated[str, typer.Argument()],
    as_json: Json = False,
) -> None:
    """Ask a worker to drain: it finishes what it holds, takes nothing new, and exits."""
    record = Api(Settings(), admin=True).call("POST", f"{_base(pipeline_id)}/{worker_id}/drain")
    if as_json:
        print_json(record)
    else:
        out.print(f"worker {worker_id} is {record['state']}")


@app.command("register-lambda")
def register_lambda(
    pipeline_id: Annotated[str, typer.Argument()],
    function_name: Annotated[str, typer.Option(help="The worker function's name or ARN.")],
    contract_version: Annotated[str, typer.Option(help="The release's contract (sha256:…).")],
    release: Annotated[str, typer.Option(help="Release version the function runs.")],
    worker_id: Annotated[str | None, typer.Option(help="Defaults to <function>@<release>.")] = None,
    as_json: Json = False,
) -> None:
    """Register a Lambda worker (at deploy time): healthy while its event source mapping is
    enabled."""
    body = {
        "workerId": worker_id or f"{function_name.rsplit(':', 1)[-1]}@{release}",
        "kind": "lambda",
        "functionName": function_name,
        "contractVersion": contract_version,
        "releaseVersion": release,
    }
    record = Api(Settings(), admin=True).call("POST", f"{_base(pipeline_id)}/register", json=body)
    if as_json:
        print_json(record)
    else:
        out.print(f"registered Lambda worker {record['workerId']}: {record['state']}")
