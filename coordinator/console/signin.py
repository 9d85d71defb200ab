"""Sign in with a bearer token, sign out, and the landing page that picks a tenant."""

from __future__ import annotations

import hmac
import re
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coordinator.access import TokenScopes
from coordinator.console.pages import (
    CONSOLE,
    ConsoleRoute,
    form_of,
    render,
    see_other,
    sessions,
    signed_in,
    tenant_of,
)
from coordinator.console.sessions import COOKIE

PRE_SIGN_IN = "tpf_console_sign_in"
"""A cookie matched against the sign-in form, so no other site can sign a browser in."""
_USER = re.compile(r"^[\w .@-]{1,40}$")
_NEXT = re.compile(r"^/console(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%=&+,:-]*)?$")
"""Where a sign-in may lead: a console page of this site, never another site (``//evil``)."""


def sign_in_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE, route_class=ConsoleRoute)

    @router.get("/sign-in")
    async def sign_in_page(request: Request) -> Response:
        return _sign_in_form(request, next_page=request.query_params.get("next", ""))

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        fields = await form_of(request, None)
        expected = request.cookies.get(PRE_SIGN_IN, "")
        presented = fields.get("sign_in_nonce", "")
        if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
            return _sign_in_form(request, "", "the sign-in form expired; try again", 403)
        next_page = fields.get("next", "")
        user = fields.get("user", "").strip() or "operator"
        if not _USER.match(user):
            message = "a name is 1 to 40 letters, digits, spaces or . @ _ -"
            return _sign_in_form(request, next_page, message, 400)
        scopes: TokenScopes = request.app.state.token_scopes
        grant = scopes.grant(fields.get("token", ""))
        if grant is None:
            return _sign_in_form(request, next_page, "that token is not one of ours", 401)
        session = await sessions(request).start(grant, user)
        response = see_other(next_page if _NEXT.match(next_page) else CONSOLE)
        response.set_cookie(
            COOKIE,
            session.session_id,
            max_age=int(sessions(request).ttl_s),
            path=CONSOLE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(PRE_SIGN_IN, path=CONSOLE)
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        session = await signed_in(request)
        await form_of(request, session)
        await sessions(request).end(session.session_id)
        response = see_other(f"{CONSOLE}/sign-in")
        response.delete_cookie(COOKIE, path=CONSOLE)
        return response

    @router.get("")
    async def landing(request: Request) -> Response:
        session = await signed_in(request)
        tenant = request.query_params.get("tenant", "")
        if not tenant:
            scope = session.grant.tenants
            tenant = sorted(scope)[0] if scope else "default"
        return see_other(f"{CONSOLE}/tenants/{tenant_of(session, tenant)}/overview")

    return router


def _sign_in_form(request: Request, next_page: str, error: str = "", status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "sign_in.html",
        status=status,
        error=error,
        nonce=nonce,
        next_page=next_page if _NEXT.match(next_page) else "",
    )
    response.set_cookie(
        PRE_SIGN_IN,
        nonce,
        max_age=3600,
        path=CONSOLE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
