"""``tpf coordinator`` and ``tpf worker``: the two roles, one artifact."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.console import Console

from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpfctl.cli.common import run_role

app = typer.Typer()
err = Console(stderr=True)


@app.command()
def coordinator(
    one_process: Annotated[
        list[str] | None,
        typer.Option(
            "--in-process-pipeline",
            help="One-process mode: also run a worker for this pipeline (module:attribute).",
        ),
    ] = None,
) -> None:
    """Run a coordinator replica: HTTP API, results consumer and sweeper."""
    from coordinator.role import serve

    settings = Settings()
    if one_process and settings.require_remote_worker:
        raise ConfigurationError(
            "require_remote_worker=true: this coordinator refuses to run transitions in-process"
        )
    topology = "one-process (coordinator and worker)" if one_process else "coordinator only"
    remote = ", remote workers required" if settings.require_remote_worker else ""
    err.print(f"topology: {topology}{remote}", highlight=False)

    async def main(stop: asyncio.Event) -> None:
        roles = [serve(settings, stop)]
        if one_process:
            from tpf.loading import load_pipeline
            from worker.role import serve as serve_worker

            pipelines = [load_pipeline(p) for p in one_process]
            roles.append(serve_worker(settings, stop, pipelines, settings.release))
        await asyncio.gather(*roles)

    run_role("coordinator", main)


@app.command()
def worker(
    pipeline: Annotated[
        list[str] | None,
        typer.Option(help="Pipeline to host, as module:attribute (repeatable; or TPF_PIPELINES)."),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(help="Release version this worker runs (default: TPF_RELEASE or 1.0.0)."),
    ] = None,
    rest_port: Annotated[
        int | None,
        typer.Option(
            envvar="TPF_WORKER_PORT",
            help="Serve signed REST on this port instead of polling the work queue.",
        ),
    ] = None,
) -> None:
    """Run a transition worker (worker-only topology) for one release of its pipelines."""
    from tpf.loading import load_pipeline
    from worker.role import serve

    references = pipeline or [p for p in os.environ.get("TPF_PIPELINES", "").split(",") if p]
    if not references:
        raise ConfigurationError("name at least one --pipeline module:attribute")
    pipelines = [load_pipeline(p) for p in references]
    settings = Settings()
    version = release or settings.release
    transport = f"REST on port {rest_port}" if rest_port else "its release's work queue"
    err.print(f"topology: worker only, release {version}, {transport}", highlight=False)
    run_role("worker", lambda stop: serve(settings, stop, pipelines, version, rest_port=rest_port))


@app.command()
def register(
    pipeline: Annotated[
        list[str], typer.Argument(help="Pipelines to register, as module:attribute.")
    ],
    release: Annotated[str, typer.Option(help="Release version to register and activate.")] = (
        "1.0.0"
    ),
) -> None:
    """Register each pipeline's contract and a release of it, and activate that release."""
    from tpf.loading import load_pipeline
    from tpfctl.stack import register_all

    pipelines = [load_pipeline(p) for p in pipeline]
    asyncio.run(register_all(Settings(), pipelines, release))
    for p in pipelines:
        print(f"registered {p.id} {release} (active)")
