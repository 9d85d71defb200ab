"""A role runs on uvloop where it is installed, on asyncio's loop when told, and refuses a
loop it was told to use but cannot have."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator

import pytest
import uvloop

from tpf.errors import ConfigurationError
from tpf.event_loop import loop_factory
from tpfctl.cli.common import run_role


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A role configures the root logger for its process; this one is the suite's."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _loop_of_a_role() -> type[asyncio.AbstractEventLoop]:
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def main(stop: asyncio.Event) -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_role("worker", main)
    return seen[0]


def test_a_role_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TPF_EVENT_LOOP", raising=False)

    assert _loop_of_a_role() is uvloop.Loop


def test_a_role_told_asyncio_runs_on_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPF_EVENT_LOOP", "asyncio")

    assert not issubclass(_loop_of_a_role(), uvloop.Loop)


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an import finds where it isn't built

    assert loop_factory("auto") is None
    with pytest.raises(ConfigurationError, match="uvloop is not installed"):
        loop_factory("uvloop")
