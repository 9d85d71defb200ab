"""One benchmark run: a stack of its own, started on first use, and measured loads on it.

The stack is a fresh one (``bench-<random>``) with the usual fleet: coordinators and workers as
separate processes, each rewriting its request ledger every 0.2 s. On LocalStack its tables,
queues and buckets are deleted at the end; the embedded substrate goes away with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.history import Change
from infra.provision import teardown
from tpf.records import Status
from tpfctl.bench import observe
from tpfctl.bench.drive import Load, Outcome, driving
from tpfctl.stack import DEFAULT_PIPELINES, OwnedStack, StackSpec, owned_stack


@dataclass(frozen=True)
class Options:
    substrate: str = "localstack"
    profile: str = "default"
    coordinators: int = 1
    workers: int = 2
    concurrency: int = 16
    """Submits (and inbox answers) in flight at once."""
    batch: int = 100
    """Executions per pipeline submitted at once, for the cost at load."""
    sequential: int = 20
    """Executions per pipeline run one at a time, for the cost at low load."""
    throughput: int = 300
    rounds: int = 3
    """Throughput rounds (framework, then ceiling); the median is reported."""
    latency: int = 100
    csv_rows: int = 10_000
    search_records: int = 100_000
    pipelines: tuple[str, ...] = DEFAULT_PIPELINES


@dataclass(frozen=True)
class Measured:
    load: Load
    outcome: Outcome
    histories: dict[str, list[Change]]
    window: observe.Window

    @property
    def transitions(self) -> int:
        """Transitions dispatched: each one leaves a RUNNING entry in the history."""
        return sum(
            1 for changes in self.histories.values() for c in changes if c.status is Status.RUNNING
        )


class Session:
    def __init__(self, stack: OwnedStack, options: Options) -> None:
        self.stack, self.options = stack, options

    @property
    def workdir(self) -> Path:
        return self.stack.fleet.workdir

    def measure(self, load: Load, *, settle: bool = True) -> Measured:
        """Run ``load`` between two readings of the fleet. The window closes once every
        execution is terminal and, when ``settle``, its history (written off the commit path)
        has landed too; a throughput window closes at once, so its requests match its time."""
        how = "one at a time" if load.one_at_a_time else "at once"
        print(f"  {load.tenant}: {load.executions} x {load.pipeline} {how}", file=sys.stderr)
        start = observe.read(self.stack.fleet)
        outcome = asyncio.run(self._drive(load))
        end = None if settle else observe.read(self.stack.fleet)
        histories = asyncio.run(self._histories(outcome))
        end = end or observe.read(self.stack.fleet)
        return Measured(load, outcome, histories, observe.Window(start, end))

    async def _drive(self, load: Load) -> Outcome:
        async with driving(self.stack, concurrency=self.options.concurrency) as driver:
            return await driver.run(load)

    async def _histories(self, outcome: Outcome) -> dict[str, list[Change]]:
        async with driving(self.stack) as driver:
            return await driver.histories(outcome.records)

    def worker_logs(self) -> list[Path]:
        return [m.log_path for m in self.stack.fleet.members if m.role == "worker"]


class LazySession:
    """Starts the stack the first time a benchmark asks for it, so a skipped one costs nothing."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._exit = contextlib.ExitStack()
        self._session: Session | None = None

    def get(self) -> Session:
        if self._session is None:
            self._session = Session(self._exit.enter_context(_stack(self.options)), self.options)
        return self._session

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> LazySession:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


@contextlib.contextmanager
def _stack(options: Options) -> Iterator[OwnedStack]:
    spec = StackSpec(
        substrate=options.substrate,
        stack=f"bench-{uuid.uuid4().hex[:6]}",
        profile=options.profile,
        coordinators=options.coordinators,
        workers=options.workers,
        pipelines=options.pipelines,
        # Latency is read from the history, and the cost model counts its writes.
        extra_env={"TPF_HISTORY": "true"},
    )
    stack: OwnedStack | None = None
    try:
        with owned_stack(spec) as stack:
            yield stack
    finally:
        if stack is not None and options.substrate == "localstack":
            teardown(stack.settings, endpoints=stack.endpoints)
