"""What every console page shares: templates, the signed-in session, forms and their CSRF token,
and errors rendered as pages rather than JSON.

Everything rendered is escaped (autoescape on for every template): payloads, ids and error
messages are user data. Forms are read here rather than by FastAPI so that a malformed body is
a 400 page, never a 422 or a 500, and so that no form is read before its CSRF token is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from coordinator.console.sessions import COOKIE, Session, SessionStore
from coordinator.store.search import UnsupportedSearch
from tpf.errors import Conflict, InvalidInput, NotFound
from tpf.records import MAX_TENANT, check_identifier

CONSOLE = "/console"
MAX_FORM_FIELDS = 100
HEADERS = {
    # No script, style or form target from anywhere but here; never framed (clickjacking).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class ConsoleError(Exception):
    """A request the console refuses, shown to the person as a page with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SignInRequired(Exception):
    pass


def when(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "—"
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


templates = Environment(
    loader=PackageLoader("coordinator.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)
templates.filters["when"] = when
templates.filters["short"] = lambda text: text[:8] if text else ""


def render(request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    session = getattr(request.state, "session", None)
    html = templates.get_template(name).render(
        console=CONSOLE, session=session, path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.console_sessions
    return store


async def signed_in(request: Request) -> Session:
    """The request's session; a page asks the person to sign in without one."""
    session = await sessions(request).find(request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired()
    request.state.session = session
    return session


async def tenant_session(request: Request, tenant_id: str) -> Session:
    """The session of a request for one tenant's page, once it may see that tenant."""
    session = await signed_in(request)
    tenant_of(session, tenant_id)
    return session


TenantSession = Annotated[Session, Depends(tenant_session)]
"""A route's parameter for the session ``tenant_router`` already checked (resolved once)."""


def tenant_router(path: str = "") -> APIRouter:
    """A router of pages under ``/console/tenants/{tenant_id}``.

    Every route on it depends on ``tenant_session``, whether or not its handler asks for the
    session: a page added later cannot forget the check and show another tenant's data.
    """
    return APIRouter(
        prefix=f"{CONSOLE}/tenants/{{tenant_id}}{path}",
        route_class=ConsoleRoute,
        dependencies=[Depends(tenant_session)],
    )


def tenant_of(session: Session, tenant_id: str) -> str:
    """``tenant_id`` when it is well formed and this session may see it; 403 otherwise."""
    try:
        check_identifier(tenant_id, what="tenant id", pointer="", limit=MAX_TENANT)
    except InvalidInput as exc:
        raise ConsoleError(400, str(exc)) from exc
    if not session.grant.admits(tenant_id):
        raise ConsoleError(403, f"your token may not see tenant {tenant_id}")
    return tenant_id


def may_act(session: Session) -> None:
    """Re-drive and cancel are admin actions, as on the API."""
    if not session.grant.admin:
        raise ConsoleError(403, "re-drive and cancel need the admin token or a tenant token")


async def form_of(request: Request, session: Session | None) -> dict[str, str]:
    """The fields of a url-encoded form; with a session, only once its CSRF token matched.

    A field given twice is refused: no form of ours has one, so it is a forged or broken body.
    """
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ConsoleError(400, "send the form as application/x-www-form-urlencoded")
    try:
        text = (await request.body()).decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConsoleError(400, "the form is not well-formed url-encoded UTF-8") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise ConsoleError(400, f"the form gives {name[:40]!r} more than once")
        fields[name] = value
    if session is not None and not session.csrf_matches(fields.pop("csrf", "")):
        raise ConsoleError(403, "the form's CSRF token is missing or wrong; reload the page")
    return fields


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


class ConsoleRoute(APIRoute):
    """Errors of console routes become HTML pages; a missing session sends GETs to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                if request.method == "GET":
                    # Back to the same page after signing in, its filters kept.
                    query = request.url.query
                    target = request.url.path + (f"?{query}" if query else "")
                    return see_other(f"{CONSOLE}/sign-in?next={quote(target, safe='/')}")
                return error_page(request, 403, "sign in first (your session ended)")
            except ConsoleError as exc:
                return error_page(request, exc.status, str(exc))
            except (InvalidInput, UnsupportedSearch) as exc:
                return error_page(request, 400, str(exc))
            except NotFound as exc:
                return error_page(request, 404, str(exc))
            except Conflict as exc:
                return error_page(request, 409, str(exc))

        return handle


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)
