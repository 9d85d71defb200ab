"""The benchmarks by name, run in order on one stack, one JSON object per line.

A benchmark is a function from the (lazily started) session to its JSON lines; adding one is
writing that function and naming it here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from tpfctl.bench import cost, csv_scale, latency, search, throughput
from tpfctl.bench.peer import compare as peer
from tpfctl.bench.session import LazySession, Options

Benchmark = Callable[[LazySession], list[dict[str, Any]]]

BENCHMARKS: dict[str, Benchmark] = {
    "cost": cost.run,
    "throughput": throughput.run,
    "latency": latency.run,
    "csv": csv_scale.run,
    "search": search.run,
    "peer": peer.run,
}


def announce(name: str) -> None:
    print(f"bench: {name}", file=sys.stderr, flush=True)


def run(
    names: Iterable[str],
    options: Options,
    out: TextIO = sys.stdout,
    starting: Callable[[str], None] = announce,
) -> list[dict[str, Any]]:
    """Run ``names`` in order; ``starting`` is told each one's name as it starts."""
    lines = []
    with LazySession(options) as bench:
        for name in names:
            starting(name)
            for found in BENCHMARKS[name](bench):
                line = {"benchmark": found["benchmark"], "substrate": options.substrate, **found}
                print(json.dumps(line), file=out, flush=True)
                lines.append(line)
    return lines
