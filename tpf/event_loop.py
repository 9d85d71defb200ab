"""The event loop a role runs on.

Much of a coordinator's CPU is plumbing around its requests: waking tasks, moving bytes
through transports, parsing HTTP. uvloop does that work in C; with it (and httptools parsing
for uvicorn) a coordinator spends less CPU per transition at the same requests
(``docs/benchmarks.md``, coordinator CPU). It is a
dependency wherever it builds (not on Windows), so ``auto`` takes it when it is importable and
asyncio's own loop otherwise; ``asyncio`` asks for the standard loop, and ``uvloop`` refuses to
start without it rather than run slower than configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from tpf.errors import ConfigurationError

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What ``asyncio.Runner(loop_factory=...)`` takes; ``None`` is asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigurationError(
                "TPF_EVENT_LOOP=uvloop, but uvloop is not installed here "
                "(pip install uvloop, or TPF_EVENT_LOOP=auto)"
            ) from None
        return None
    return uvloop.new_event_loop
