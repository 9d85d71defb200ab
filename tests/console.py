"""Signing in to the console over HTTP, shared by the console's unit and hostile-input tests."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from coordinator.admin import admin_router
from coordinator.api import create_app
from coordinator.console import install_console
from coordinator.console.session_tables import MemorySessionTable
from coordinator.console.sessions import SessionTable
from coordinator.testing import InMemoryCoordinator
from coordinator.workers_api import workers_router

CONTROL, ADMIN = "control-token-0123456789", "admin-token-0123456789"
ACME_ONLY = "acme-only-token-0123456789"
"""Scoped to tenant acme."""
_NONCE = re.compile(r'name="sign_in_nonce" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@asynccontextmanager
async def console_client(
    coordinator: InMemoryCoordinator, sessions: SessionTable | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (it keeps cookies) of a coordinator serving the console; replicas
    given the same ``sessions`` share their sign-ins."""
    app = create_app(
        coordinator.service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        tenant_tokens={ACME_ONLY: ["acme"]},
        routers=[admin_router(coordinator.operations), workers_router(coordinator.workers)],
        max_body_bytes=16 * 1024,
    )
    install_console(app, coordinator, sessions=sessions or MemorySessionTable(), session_ttl_s=600)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client


async def sign_in(client: httpx.AsyncClient, token: str, user: str = "ada") -> httpx.Response:
    page = await client.get("/console/sign-in")
    match = _NONCE.search(page.text)
    assert match, page.text
    return await client.post(
        "/console/sign-in", data={"sign_in_nonce": match.group(1), "token": token, "user": user}
    )


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, html
    return match.group(1)
