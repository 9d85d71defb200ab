"""What the CLI tests talk to: a coordinator API answering from dictionaries, behind
``httpx.MockTransport`` (the seam ``Api.transport``), and consoles of a known width."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rich.console import Console

from tpfctl.cli import common

Handler = Callable[[httpx.Request], Any]


class FakeApi:
    """Answers ``(method, path)`` with a fixed document or a handler's (a document or a whole
    response); 404 otherwise."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def answer(self, method: str, path: str, body: Any) -> None:
        self.routes[(method, path)] = body if callable(body) else (lambda _: body)

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            route = self.routes.get((request.method, request.url.path))
            if route is None:
                return httpx.Response(404, json={"message": f"no {request.url.path}"})
            found = route(request)
            return found if isinstance(found, httpx.Response) else httpx.Response(200, json=found)

        return httpx.MockTransport(handle)


def use(api: FakeApi, monkeypatch: pytest.MonkeyPatch, state_dir: str) -> None:
    """Point the CLI at ``api``, with tokens of its own and an 80-column console."""
    for name in [n for n in os.environ if n.startswith("TPF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TPF_STATE_DIR", state_dir)
    monkeypatch.setenv("TPF_API_URL", "http://coordinator")
    monkeypatch.setenv("TPF_CONTROL_PLANE_TOKEN", "control-token-for-tests")
    monkeypatch.setenv("TPF_ADMIN_TOKEN", "admin-token-for-tests")
    monkeypatch.setattr(common.Api, "transport", api.transport())
    monkeypatch.setattr(common.out, "width", 80)


def body(request: httpx.Request) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(request.content)
    return found


def console(width: int = 80, *, terminal: bool = False) -> Console:
    """A console writing to memory; ``soft_wrap`` as the CLI's own."""
    return Console(
        file=io.StringIO(),
        width=width,
        soft_wrap=True,
        force_terminal=terminal,
        color_system=None,
    )


def text(of: Console) -> str:
    file = of.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def widest(output: str) -> int:
    return max((len(line) for line in output.splitlines()), default=0)
