"""What the commands share: settings, where the API is, output as JSON (tables: ``tables``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import httpx
from rich.console import Console

from tpf.accounting import LEDGER
from tpf.errors import ConfigurationError, TpfError
from tpf.event_loop import loop_factory
from tpf.secret_references import resolve_token
from tpf.settings import Settings
from tpf.substrate import read_state

out = Console(soft_wrap=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


class ApiCallFailed(TpfError):
    """The API answered with an error; the message is what a person needs to read."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status


class Api:
    """The coordinator's HTTP API, located from the environment or `tpf up`'s state file."""

    transport: ClassVar[httpx.BaseTransport | None] = None
    """Where requests go; None: the network. Tests put an ``httpx.MockTransport`` here."""

    def __init__(self, settings: Settings, *, admin: bool = False) -> None:
        state = read_state(settings) or {}
        self.base_url = os.environ.get("TPF_API_URL") or state.get("api_url")
        if not self.base_url:
            self.base_url = f"http://127.0.0.1:{settings.api_port}"
        name = "admin_token" if admin else "control_plane_token"
        self.token = resolve_token(getattr(settings, name), settings) or state.get(name)
        if not self.token:
            raise ConfigurationError(f"no {name}: set TPF_{name.upper()} or run `tpf up`")

    def call(self, method: str, path: str, *, timeout: float = 10, **kwargs: Any) -> Any:
        try:
            with httpx.Client(transport=self.transport, timeout=timeout) as client:
                response = client.request(
                    method,
                    f"{self.base_url}{path}",
                    headers={"Authorization": f"Bearer {self.token}"},
                    **kwargs,
                )
        except httpx.HTTPError as exc:
            raise ConfigurationError(
                f"cannot reach the coordinator at {self.base_url}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("message", response.text)
                if body.get("pointer") is not None:
                    detail += f" (at {body['pointer'] or '/'})"
            except ValueError:
                detail = response.text
            raise ApiCallFailed(response.status_code, detail)
        return response.json()


def run_role(role: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run a long-lived role until SIGTERM/SIGINT, then let it drain; write its ledger."""
    from tpf import logs

    settings = Settings()
    logs.configure(role)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await _until_reachable(main, stop, wait_s=settings.startup_wait_s, role=role)
        finally:
            if settings.ledger_file:
                settings.ledger_file.write_text(LEDGER.to_json())

    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as loop:
        loop.run(runner())


async def _until_reachable(
    main: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    wait_s: float,
    role: str,
) -> None:
    """Run ``main``; while it fails because the substrate is down (within ``wait_s`` of the
    start), wait and run it again. A restart during an outage then waits the outage out
    instead of exiting as if the configuration were wrong."""
    from tpf.aws_errors import unavailable
    from tpf.loops import pause

    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + wait_s, 0.5
    while True:
        try:
            await main(stop)
            return
        except Exception as exc:
            if stop.is_set() or not unavailable(exc) or loop.time() > deadline:
                raise
            logging.getLogger("tpf").warning(
                "%s cannot reach the substrate yet (%s); trying again in %.1f s",
                role,
                type(exc).__name__,
                delay,
                extra={"action": "wait-for-substrate"},
            )
        await pause(stop, delay)
        if stop.is_set():
            return
        delay = min(delay * 2, 5.0)
