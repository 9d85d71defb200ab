"""``tpf bench``: cost, throughput, coordinator CPU, latency, CSV scale and execution search,
one JSON object per line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.progress import Progress

from tpf.errors import ConfigurationError
from tpfctl.cli.progress import bars, for_people

app = typer.Typer()

NAMES = ("cost", "throughput", "latency", "csv", "search", "peer")


@app.command()
def bench(
    names: Annotated[
        list[str] | None, typer.Argument(help=f"Benchmarks to run: {', '.join(NAMES)} (all).")
    ] = None,
    substrate: Annotated[str, typer.Option(help="embedded or localstack.")] = "localstack",
    batch: Annotated[int, typer.Option(min=1, help="Cost: executions submitted at once.")] = 100,
    sequential: Annotated[
        int, typer.Option(min=1, help="Cost: executions run one at a time.")
    ] = 20,
    executions: Annotated[int, typer.Option(min=1, help="Throughput: executions.")] = 300,
    rounds: Annotated[
        int, typer.Option(min=1, help="Throughput: rounds, reported by their median.")
    ] = 3,
    latency: Annotated[
        int, typer.Option(min=1, help="Latency: executions run one at a time.")
    ] = 100,
    csv_rows: Annotated[
        int,
        typer.Option(
            "--rows",
            "--csv-rows",
            min=1,
            help="CSV scale: rows of the file (above 10,000, a 10,000-row file runs first).",
        ),
    ] = 10_000,
    search_records: Annotated[
        int, typer.Option(min=1, help="Search: execution records to search among.")
    ] = 100_000,
    concurrency: Annotated[int, typer.Option(min=1, help="Submits in flight at once.")] = 16,
    workers: Annotated[int, typer.Option(min=1, max=16)] = 2,
    coordinators: Annotated[int, typer.Option(min=1, max=4)] = 1,
    profile: Annotated[str, typer.Option(help="Timings profile: default or test.")] = "default",
) -> None:
    """Measure on a stack of its own; print one JSON object per line per benchmark."""
    from tpfctl.bench.session import Options
    from tpfctl.bench.suite import announce, run

    chosen = names or list(NAMES)
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        raise ConfigurationError(f"no benchmark {', '.join(unknown)}; choose from {NAMES}")
    if substrate not in ("embedded", "localstack"):
        raise ConfigurationError("--substrate is embedded or localstack")
    options = Options(
        substrate=substrate,
        profile=profile,
        coordinators=coordinators,
        workers=workers,
        concurrency=concurrency,
        batch=batch,
        sequential=sequential,
        throughput=executions,
        rounds=rounds,
        latency=latency,
        csv_rows=csv_rows,
        search_records=search_records,
    )
    with bars(wanted=for_people()) as progress:
        phases = Phases(progress, chosen, unwatched=announce)
        # sys.stdout as it is now: while the bar is drawn, lines go above it.
        run(chosen, options, out=sys.stdout, starting=phases.start)
        phases.finish()


class Phases:
    """One bar over the benchmarks, the one running named; with no bar drawn, a line on
    stderr per benchmark as before. The JSON lines are the same either way (printed above the
    bar while it is drawn, which is only when stdout is a terminal)."""

    def __init__(
        self, progress: Progress, names: list[str], unwatched: Callable[[str], None]
    ) -> None:
        self.progress, self.unwatched, self.done = progress, unwatched, -1
        self.task = progress.add_task("bench", total=len(names))

    def start(self, name: str) -> None:
        if self.progress.disable:
            self.unwatched(name)
        self.done += 1
        self.progress.update(self.task, completed=self.done, description=f"bench: {name}")

    def finish(self) -> None:
        self.progress.update(self.task, completed=self.done + 1, description="bench: done")
