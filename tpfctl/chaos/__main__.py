"""``python -m tpfctl.chaos``: run the crash harness and print its summary as one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tpfctl import lifeline
from tpfctl.chaos.faults import FaultRates
from tpfctl.chaos.harness import run
from tpfctl.chaos.options import Options

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    executions: Annotated[int, typer.Option(min=1, help="Executions in the mixed load.")] = 300,
    kills: Annotated[int, typer.Option(min=0, help="SIGKILLs, each followed by a restart.")] = 50,
    freezes: Annotated[
        int, typer.Option(min=0, help="SIGSTOPs of workers, each longer than a deadline.")
    ] = 10,
    duplicate_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of SQS messages delivered twice.")
    ] = 0.0,
    substrate: Annotated[str, typer.Option(help="embedded or localstack.")] = "embedded",
    coordinators: Annotated[int, typer.Option(min=1)] = 2,
    workers: Annotated[int, typer.Option(min=1)] = 3,
    seed: Annotated[int | None, typer.Option(help="Repeat a run's random choices.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to reach quiescence.")] = 600.0,
    workdir: Annotated[
        Path | None, typer.Option(help="Logs, ledgers and invocation logs (default .chaos/<run>).")
    ] = None,
    throttle_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of AWS requests answered as throttled.")
    ] = 0.0,
    error_rate: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share answered 500 (half after the change happened)."),
    ] = 0.0,
    latency_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share answered 50 ms to 1 s late.")
    ] = 0.0,
    drop_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share whose connection is closed unanswered.")
    ] = 0.0,
    blackouts: Annotated[
        int, typer.Option(min=0, help="Periods when every AWS service is unreachable.")
    ] = 0,
    blackout_seconds: Annotated[float, typer.Option(min=0.1, help="Length of each.")] = 8.0,
    dynamodb_restarts: Annotated[
        int,
        typer.Option(min=0, help="Restarts of DynamoDB Local, data kept (localstack only)."),
    ] = 0,
) -> None:
    """Run a fleet under mixed load, kill and freeze its processes at random, check invariants.

    Prints one JSON line; exits 1 when an invariant is violated.
    """
    lifeline.follow_owner()
    report = run(
        Options(
            executions=executions,
            kills=kills,
            freezes=freezes,
            duplicate_rate=duplicate_rate,
            substrate=substrate,
            coordinators=coordinators,
            workers=workers,
            seed=seed,
            timeout_s=timeout,
            workdir=workdir,
            faults=FaultRates(
                throttle=throttle_rate, error=error_rate, latency=latency_rate, drop=drop_rate
            ),
            blackouts=blackouts,
            blackout_s=blackout_seconds,
            dynamodb_restarts=dynamodb_restarts,
        )
    )
    print(json.dumps(report))
    sys.exit(1 if report["violations"] else 0)


if __name__ == "__main__":
    app()
