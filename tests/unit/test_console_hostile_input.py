"""Hostile input at the console's routes: generated query strings, paths and form bodies.

Whatever arrives, the answer is a page (a clear 400, 403 or 404, or the page itself), never a
5xx, and nothing sent comes back unescaped: the console's pages hold no ``<script`` of their own,
so any in a page would be reflected input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.testing import InMemoryCoordinator
from examples.restaurant_approval import restaurant_approval
from tests.console import ADMIN, console_client, csrf_of, sign_in
from tests.unit.test_console import NOW, submitted
from tpf.records import Status

pytestmark = pytest.mark.timeout(180)
EXAMPLES = settings(max_examples=60, suppress_health_check=list(HealthCheck), deadline=None)
ANSWERS = {200, 303, 307, 400, 403, 404, 409, 413}
"""307: the router's own redirect of a path ending in a slash (an encoded one in an id)."""

TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            '"><script>alert(1)</script>',
            "DLQ",
            "FAILED,DLQ",
            "2026-12-03T09:30:00Z",
            "-1",
            "9" * 30,
            "\x00",
            "%ZZ",
            "' OR 1=1 --",
            "../../etc/passwd",
            "\u202e\ufeff",
        ]
    ),
)
NAMES = st.one_of(
    st.sampled_from(
        [
            "status",
            "pipelineId",
            "errorCode",
            "since",
            "until",
            "limit",
            "cursor",
            "stepId",
            "tenant",
            "done",
            "next",
            "reason",
            "expectedVersion",
            "confirm",
            "allowFailed",
            "dryRun",
            "type",
            "accepted.orderId",
            "response",
            "csrf",
        ]
    ),
    TEXT,
)
PAIRS = st.lists(st.tuples(NAMES, TEXT), max_size=6)


@pytest.fixture
async def signed_in() -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    """A browser signed in with the admin token, a dead-lettered execution of acme, and the
    session's CSRF token."""
    coordinator = InMemoryCoordinator.create()
    contract = await coordinator.register(restaurant_approval)
    record = submitted(contract, "acme", NOW)
    await coordinator.store.submit(record, now_ms=NOW)
    await coordinator.store.fail(
        record,
        transition_key=record.transition_key,
        status=Status.DLQ,
        error_code="TRANSITION_TIMEOUT",
        message="out of attempts",
        now_ms=NOW + 1,
    )
    async with console_client(coordinator) as client:
        await sign_in(client, ADMIN)
        csrf = csrf_of((await client.get("/console/tenants/acme/executions")).text)
        yield client, record.execution_id, csrf


def pages(execution_id: str) -> list[str]:
    return [
        "/console",
        "/console/sign-in",
        "/console/tenants/acme/executions",
        f"/console/tenants/acme/executions/{execution_id}",
        f"/console/tenants/acme/executions/{execution_id}/payloads/input",
        "/console/tenants/acme/inbox",
        f"/console/tenants/acme/inbox/{execution_id}-0",
        "/console/tenants/acme/dead-letters",
        "/console/tenants/acme/releases",
        "/console/tenants/acme/overview",
    ]


def actions(execution_id: str) -> list[str]:
    return [
        "/console/sign-in",
        "/console/sign-out",
        f"/console/tenants/acme/executions/{execution_id}/redrive",
        f"/console/tenants/acme/executions/{execution_id}/cancel",
        f"/console/tenants/acme/inbox/{execution_id}-0",
        "/console/tenants/acme/dead-letters/redrive",
        "/console/tenants/acme/pipelines/p/workers/w/drain",
    ]


def inert(response: httpx.Response) -> None:
    assert response.status_code in ANSWERS, (response.status_code, response.text[-500:])
    if response.headers.get("content-type", "").startswith("text/html"):
        assert "<script" not in response.text.lower(), response.text


@EXAMPLES
@given(page=st.integers(0, 9), pairs=PAIRS)
async def test_no_query_string_gets_a_5xx_or_comes_back_unescaped(
    signed_in: tuple[httpx.AsyncClient, str, str], page: int, pairs: list[tuple[str, str]]
) -> None:
    client, execution_id, _ = signed_in
    route = pages(execution_id)[page]
    inert(await client.get(route + "?" + urlencode(pairs)))


@EXAMPLES
@given(segment=TEXT, page=st.integers(0, 3))
async def test_no_tenant_or_id_in_the_path_gets_a_5xx_or_comes_back_unescaped(
    signed_in: tuple[httpx.AsyncClient, str, str], segment: str, page: int
) -> None:
    client, execution_id, _ = signed_in
    part = quote(segment, safe="") or "x"
    route = [
        f"/console/tenants/{part}/executions",
        f"/console/tenants/acme/executions/{part}",
        f"/console/tenants/acme/inbox/{part}",
        f"/console/tenants/acme/executions/{execution_id}/payloads/{part}",
    ][page]
    inert(await client.get(route))


@EXAMPLES
@given(
    action=st.integers(0, 6),
    pairs=PAIRS,
    with_csrf=st.booleans(),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
async def test_no_form_body_gets_a_5xx_or_comes_back_unescaped(
    signed_in: tuple[httpx.AsyncClient, str, str],
    action: int,
    pairs: list[tuple[str, str]],
    with_csrf: bool,
    raw: bytes | None,
) -> None:
    client, execution_id, csrf = signed_in
    route = actions(execution_id)[action]
    if route.endswith("sign-out"):
        with_csrf = False  # a valid one would end the session the other examples need
    body = raw if raw is not None else urlencode(pairs).encode()
    if with_csrf and raw is None:
        body = urlencode([("csrf", csrf), *((k, v) for k, v in pairs if k != "csrf")]).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = await client.post(route, content=body, headers=headers)
    inert(response)
    if not with_csrf and not route.endswith("sign-in"):
        assert response.status_code in {400, 403}, response.text


async def test_a_form_of_another_type_is_a_400(
    signed_in: tuple[httpx.AsyncClient, str, str],
) -> None:
    client, execution_id, csrf = signed_in
    route = actions(execution_id)[2]
    response = await client.post(route, json={"csrf": csrf, "expectedVersion": 1})
    assert response.status_code == 400
