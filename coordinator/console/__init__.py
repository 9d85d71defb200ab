"""The operations console, served by the coordinator at ``/console``: server-rendered pages over
the same services as the API.

One module per page group: ``signin``, ``overview``, ``executions``, ``inbox``,
``dead_letters``, ``releases``; what they
share (templates, sessions, CSRF, error pages) is in ``pages`` and ``sessions``.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from coordinator.console.dead_letters import dead_letters_router
from coordinator.console.executions import executions_router
from coordinator.console.inbox import inbox_router
from coordinator.console.overview import overview_router
from coordinator.console.pages import CONSOLE
from coordinator.console.releases import releases_router
from coordinator.console.sessions import SessionStore, SessionTable
from coordinator.console.signin import sign_in_router
from coordinator.wiring import Coordinator

STYLESHEET = (files("coordinator.console") / "static" / "console.css").read_bytes()


def install_console(
    app: FastAPI, coordinator: Coordinator, *, sessions: SessionTable, session_ttl_s: float
) -> None:
    """Serve the console on ``app``, its sign-ins checked against the app's tokens and kept
    in ``sessions`` (shared by every replica when it is the registry table)."""
    app.state.console_sessions = SessionStore(sessions, ttl_s=session_ttl_s)
    for router in console_routers(coordinator):
        app.include_router(router)

    @app.get(f"{CONSOLE}/static/console.css", include_in_schema=False)
    async def stylesheet() -> Response:
        return Response(STYLESHEET, media_type="text/css", headers={"Cache-Control": "max-age=300"})


def console_routers(coordinator: Coordinator) -> tuple[APIRouter, ...]:
    return (
        sign_in_router(),
        executions_router(coordinator),
        inbox_router(coordinator),
        dead_letters_router(coordinator),
        releases_router(coordinator),
        overview_router(coordinator),
    )
