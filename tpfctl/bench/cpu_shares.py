"""Where a coordinator's CPU goes: a py-spy profile, sorted into the parts of a transition.

The ``coordinator_cpu`` benchmark says how much CPU the coordinator spends per transition
against a bare loop making the same AWS requests; this says what the rest is spent on. Record
the coordinator through the throughput rounds with py-spy (in the ``bench`` extra) holding the
GIL only, so that samples are Python CPU and not waiting::

    tpf bench throughput &
    until pid=$(pgrep -n -f '[t]pfctl coordinator'); do sleep 1; done
    py-spy record --gil --rate 250 --format raw -o coordinator.txt --pid "$pid"
    python -m tpfctl.bench.cpu_shares coordinator.txt

Each sample goes to the first part its stack matches, in ``PARTS`` order; start-up (imports and
wiring before the rounds) is counted apart and left out of the shares.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STARTUP = ("_find_and_load", "running_coordinator", "admin_router")
"""Frames of a replica starting: imports, clients opened, routes built."""

AWS = ("_make_api_call", "aiobotocore/", "botocore/", "aiohttp/", "aiohappyeyeballs/")
"""The bare loop's work: what the SDK and its HTTP client spend on a request."""

PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aws_requests", AWS),
    ("submissions", ("control_plane.<locals>.submit",)),
    ("http_stack", ("uvicorn/", "starlette/", "fastapi/", "coordinator/limits.py")),
    ("results", ("coordinator/results.py", "coordinator/transitions.py")),
    ("batching", ("tpf/queues/",)),
    ("ledger", ("tpf/accounting.py",)),
    ("sweeps", ("coordinator/sweeper", "coordinator/awaits/", "coordinator/depth.py")),
)
OUR_CODE = re.compile(r"\((tpf|coordinator|worker)/")


def part_of(frames: list[str]) -> str:
    stack = ";".join(frames)
    for name, marks in PARTS:
        if any(mark in stack for mark in marks):
            return name
    if not any(OUR_CODE.search(frame) for frame in frames):
        return "event_loop"  # no frame of ours: the loop running callbacks, in C or in asyncio
    return "other"


def shares(lines: Iterable[str], *, top: int = 15) -> dict[str, Any]:
    """Shares of the samples by part, and the functions (outside AWS requests) that run most."""
    parts: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    startup = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames, samples = stack.split(";"), int(count)
        if any(mark in stack for mark in STARTUP):
            startup += samples
            continue
        part = part_of(frames)
        parts[part] += samples
        if part != "aws_requests":
            functions[re.sub(r":\d+\)$", ")", frames[-1])] += samples
    total = sum(parts.values())

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    return {
        "samples": total,
        "startup_samples": startup,
        "shares": {name: share(n) for name, n in parts.most_common()},
        "top_functions": [
            {"function": f, "share": share(n)} for f, n in functions.most_common(top)
        ],
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tpfctl.bench.cpu_shares PY_SPY_RAW_PROFILE")
    with Path(sys.argv[1]).open() as profile:
        print(json.dumps(shares(profile), indent=2))
