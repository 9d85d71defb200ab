"""The console over an in-memory coordinator: sign-in and sessions, the pages, the actions and
their CSRF token, tenant scopes, and escaping."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute

from coordinator.access import TokenScopes
from coordinator.awaits.model import AwaitUnit, Interaction
from coordinator.console import console_routers
from coordinator.console.forms import answer_of, response_form
from coordinator.console.session_tables import MemorySessionTable
from coordinator.console.sessions import COOKIE, SessionStore
from coordinator.role import scoped_tokens
from coordinator.testing import InMemoryCoordinator
from coordinator.workers import WorkerRegistration
from examples.restaurant_approval import AWAIT_STEP, RestaurantDecision, restaurant_approval
from tests.console import ACME_ONLY, ADMIN, CONTROL, console_client, csrf_of, sign_in
from tpf.clock import now_ms
from tpf.contract import Contract
from tpf.errors import ConfigurationError, InvalidInput
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, Status, new_execution
from tpf.settings import Settings

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000_000
HOSTILE = '{"note": "<script>alert(1)</script>"}'


def submitted(
    contract: Contract, tenant: str, created_ms: int, payload: str = "{}"
) -> ExecutionRecord:
    return new_execution(
        tenant_id=tenant,
        pipeline_id=contract.pipeline_id,
        idempotency_key=uuid.uuid4().hex,
        contract_version=contract.version,
        release_version="1.0.0",
        input=PayloadRef.of_inline(payload),
        now_ms=created_ms,
        dispatch_deadline_ms=created_ms + 3_000,
    )


@pytest.fixture
async def coordinator() -> InMemoryCoordinator:
    return InMemoryCoordinator.create()


@pytest.fixture
async def records(coordinator: InMemoryCoordinator) -> list[ExecutionRecord]:
    """acme: one running with a hostile payload, one dead-lettered; globex: one running."""
    store = coordinator.store
    contract = await coordinator.register(restaurant_approval)
    made = [
        submitted(contract, "acme", NOW, HOSTILE),
        submitted(contract, "acme", NOW + 1_000),
        submitted(contract, "globex", NOW + 2_000),
    ]
    for record in made:
        await store.submit(record, now_ms=record.created_at_ms)
    made[1] = await store.fail(
        made[1],
        transition_key=made[1].transition_key,
        status=Status.DLQ,
        error_code="TRANSITION_TIMEOUT",
        message="out of attempts",
        now_ms=NOW + 1_500,
    )
    return made


@pytest.fixture
async def browser(coordinator: InMemoryCoordinator) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(coordinator) as client:
        yield client


def page(records: list[ExecutionRecord], i: int) -> str:
    r = records[i]
    return f"/console/tenants/{r.tenant_id}/executions/{r.execution_id}"


async def test_a_page_without_a_session_sends_the_browser_to_sign_in(
    browser: httpx.AsyncClient,
) -> None:
    response = await browser.get("/console/tenants/acme/executions")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=/console/tenants/acme/executions"


async def test_a_wrong_token_is_refused_and_a_right_one_gets_a_session_cookie_not_the_token(
    browser: httpx.AsyncClient,
) -> None:
    assert (await sign_in(browser, "not-a-token")).status_code == 401
    response = await sign_in(browser, ADMIN)
    assert response.status_code == 303
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE))
    assert ADMIN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is set
    assert (await browser.get(response.headers["location"])).status_code == 303


async def test_sign_in_without_its_form_nonce_is_refused(browser: httpx.AsyncClient) -> None:
    response = await browser.post("/console/sign-in", data={"token": ADMIN})
    assert response.status_code == 403


async def test_the_executions_page_filters_by_the_url(
    browser: httpx.AsyncClient, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, CONTROL)
    every = (await browser.get("/console/tenants/acme/executions")).text
    dead = (await browser.get("/console/tenants/acme/executions?status=DLQ")).text
    assert records[0].execution_id in every and records[1].execution_id in every
    assert records[2].execution_id not in every  # another tenant's
    assert records[1].execution_id in dead and records[0].execution_id not in dead
    refused = await browser.get("/console/tenants/acme/executions?status=RUNNING&errorCode=X")
    assert refused.status_code == 400 and "supported" in refused.text


async def test_a_payload_holding_a_script_is_shown_as_text(
    browser: httpx.AsyncClient, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, CONTROL)
    html = (await browser.get(page(records, 0))).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    download = await browser.get(page(records, 0) + "/payloads/input")
    assert download.content == HOSTILE.encode()
    assert download.headers["content-disposition"].startswith("attachment")


async def test_a_redrive_without_the_csrf_token_is_refused_and_changes_nothing(
    browser: httpx.AsyncClient, coordinator: InMemoryCoordinator, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, ADMIN)
    dead = records[1]
    refused = await browser.post(
        page(records, 1) + "/redrive", data={"expectedVersion": str(dead.version)}
    )
    assert refused.status_code == 403
    assert (await coordinator.store.get("acme", dead.execution_id)) == dead


async def test_a_redrive_from_the_page_names_the_person_in_the_history(
    browser: httpx.AsyncClient, coordinator: InMemoryCoordinator, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, ADMIN, user="ada")
    html = (await browser.get(page(records, 1))).text
    form = {"csrf": csrf_of(html), "expectedVersion": str(records[1].version), "reason": "fixed"}
    response = await browser.post(page(records, 1) + "/redrive", data=form)
    assert response.status_code == 303
    after = await browser.get(response.headers["location"])
    assert "Re-driven" in after.text
    history = await coordinator.service.history("acme", records[1].execution_id)
    assert (history[-1].actor, history[-1].reason) == ("ada (console)", "fixed")


async def test_a_cancel_needs_a_reason_and_the_version_the_person_saw(
    browser: httpx.AsyncClient, coordinator: InMemoryCoordinator, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, ADMIN)
    running = records[0]
    csrf = csrf_of((await browser.get(page(records, 0))).text)
    route = page(records, 0) + "/cancel"
    seen = str(running.version)
    no_reason = {"csrf": csrf, "expectedVersion": seen, "confirm": "on"}
    assert (await browser.post(route, data=no_reason)).status_code == 400
    stale = {**no_reason, "reason": "duplicate", "expectedVersion": str(running.version + 1)}
    assert (await browser.post(route, data=stale)).status_code == 409
    assert (await browser.post(route, data={**stale, "expectedVersion": seen})).status_code == 303
    cancelled = await coordinator.store.get("acme", running.execution_id)
    assert cancelled is not None and cancelled.status is Status.FAILED


async def test_the_control_plane_token_reads_but_may_not_redrive(
    browser: httpx.AsyncClient, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, CONTROL)
    csrf = csrf_of((await browser.get(page(records, 1))).text)
    form = {"csrf": csrf, "expectedVersion": str(records[1].version)}
    assert (await browser.post(page(records, 1) + "/redrive", data=form)).status_code == 403


async def test_a_token_scoped_to_acme_cannot_open_globex_executions(
    browser: httpx.AsyncClient, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, ACME_ONLY)
    assert (await browser.get(page(records, 0))).status_code == 200
    refused = await browser.get(page(records, 2))
    assert refused.status_code == 403 and records[2].execution_id not in refused.text
    assert (await browser.get("/console/tenants/globex/executions")).status_code == 403


async def test_the_api_applies_tenant_scopes_too(
    browser: httpx.AsyncClient, records: list[ExecutionRecord]
) -> None:
    scoped = {"Authorization": f"Bearer {ACME_ONLY}"}
    acme = "/tpf/control-plane/tenants/acme/executions"
    assert (await browser.get(acme, headers=scoped)).status_code == 200
    globex = f"/tpf/control-plane/tenants/globex/executions/{records[2].execution_id}"
    assert (await browser.get(globex, headers=scoped)).status_code == 403
    assert (await browser.get(globex, headers={"Authorization": f"Bearer {CONTROL}"})).is_success
    wrong = {"Authorization": "Bearer acme-only-token-0123456780"}
    assert (await browser.get(acme, headers=wrong)).status_code == 401
    dead = records[1]
    redrive = f"/tpf/admin/tenants/acme/executions/{dead.execution_id}/redrive"
    assert (await browser.post(redrive, headers=scoped)).status_code == 200
    # Workers serve every tenant: draining one is not a tenant's business.
    workers = "/tpf/admin/tenants/acme/pipelines/org.example.orders/workers"
    assert (await browser.get(workers, headers=scoped)).status_code == 403
    assert (await browser.get(workers, headers={"Authorization": f"Bearer {ADMIN}"})).is_success


def test_a_scope_never_widens_a_token_and_an_empty_scope_admits_nothing() -> None:
    scopes = TokenScopes(
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        tenant_tokens={CONTROL: ["acme"], "nobody-token-0123456789": []},
    )
    control = scopes.grant(CONTROL)
    assert control is not None and control.admits("acme") and not control.admits("globex")
    nobody = scopes.grant("nobody-token-0123456789")
    assert nobody is not None and not nobody.admits("acme")
    admin = scopes.grant(ADMIN)
    assert admin is not None and admin.admin and not admin.control and admin.admits("any")
    assert scopes.grant("") is None


async def test_a_session_ends_after_its_time() -> None:
    now = [0.0]
    store = SessionStore(MemorySessionTable(), ttl_s=60, clock=lambda: now[0])
    grant = TokenScopes(control_plane_token=CONTROL, admin_token=ADMIN).grant(ADMIN)
    assert grant is not None
    session = await store.start(grant, "ada")
    now[0] = 59.0
    assert await store.find(session.session_id) == session
    now[0] = 60.0
    assert await store.find(session.session_id) is None


async def test_a_sign_in_on_one_replica_holds_on_every_replica() -> None:
    coordinator = InMemoryCoordinator.create()
    shared = MemorySessionTable()
    async with (
        console_client(coordinator, shared) as first,
        console_client(coordinator, shared) as second,
    ):
        await sign_in(first, ADMIN)
        second.cookies.set(COOKIE, first.cookies[COOKIE])
        page = await second.get("/console/tenants/acme/executions")
        assert page.status_code == 200, page.text
        signed_out = await second.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert signed_out.status_code == 303
        assert (await first.get("/console/tenants/acme/executions")).status_code == 303


async def test_every_tenant_page_refuses_a_token_scoped_to_another_tenant() -> None:
    """Walks the app's routes, so a page added later is covered without being listed here."""
    coordinator = InMemoryCoordinator.create()
    routes = [
        route
        for router in console_routers(coordinator)
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.startswith("/console/tenants/")
    ]
    assert len(routes) >= 10
    async with console_client(coordinator) as browser:
        await sign_in(browser, ACME_ONLY)
        csrf = csrf_of((await browser.get("/console/tenants/acme/executions")).text)
        for route in routes:
            path = re.sub(
                r"\{(\w+)\}", lambda m: "x1" if m.group(1) != "tenant_id" else "", route.path
            )
            for method in route.methods:
                theirs = path.replace("/tenants//", "/tenants/globex/")
                answer = await browser.request(method, theirs, data={"csrf": csrf})
                assert answer.status_code == 403, (method, theirs)
                assert "may not see tenant globex" in answer.text


async def test_signing_out_ends_the_session(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, ADMIN)
    html = (await browser.get("/console/tenants/acme/executions")).text
    signed_out = await browser.post("/console/sign-out", data={"csrf": csrf_of(html)})
    assert signed_out.status_code == 303
    assert (await browser.get("/console/tenants/acme/executions")).status_code == 303


def test_the_restaurant_decision_is_a_choice_plus_that_branchs_fields() -> None:
    order_id = str(uuid.uuid4())
    form = response_form(RestaurantDecision.model_json_schema(), {"orderId": order_id})
    assert form.choice == "type"
    assert [b.name for b in form.branches] == ["accepted", "declined"]
    accepted = form.branches[0]
    assert {f.name for f in accepted.fields} >= {"orderId", "decidedAt", "note"}
    assert next(f for f in accepted.fields if f.name == "orderId").default == order_id
    assert form.fields == ()  # the flat copies of the branch fields are not asked twice
    values = {"type": "declined", "declined.orderId": order_id, "declined.declineReason": "closed"}
    assert answer_of(form, values) == {
        "type": "declined",
        "declined": {"orderId": order_id, "declineReason": "closed"},
    }
    with pytest.raises(InvalidInput) as refused:
        answer_of(form, {"type": "maybe"})
    assert refused.value.pointer == "/type"


def test_a_schema_beyond_a_form_is_answered_as_json() -> None:
    schema = {"type": "object", "properties": {"lines": {"type": "array"}}}
    form = response_form(schema, {})
    assert form.raw
    assert answer_of(form, {"response": '{"lines": [1]}'}) == {"lines": [1]}
    with pytest.raises(InvalidInput):
        answer_of(form, {"response": "{"})


async def test_the_releases_page_shows_the_active_release_and_drains_a_worker(
    browser: httpx.AsyncClient, coordinator: InMemoryCoordinator, records: list[ExecutionRecord]
) -> None:
    pipeline = records[0].pipeline_id
    registration = WorkerRegistration(
        worker_id="w-1", contract_version=records[0].contract_version, release_version="1.0.0"
    )
    await coordinator.workers.register(pipeline, registration, NOW)
    await sign_in(browser, ACME_ONLY)
    scoped = (await browser.get("/console/tenants/acme/releases")).text
    assert pipeline in scoped and "active-release" in scoped and "w-1" in scoped
    assert "Drain</button>" not in scoped  # a worker serves every tenant
    await sign_in(browser, ADMIN)
    html = (await browser.get("/console/tenants/acme/releases")).text
    drain = f"/console/tenants/acme/pipelines/{pipeline}/workers/w-1/drain"
    assert (await browser.post(drain, data={"csrf": csrf_of(html)})).status_code == 303
    [worker] = await coordinator.workers.list(pipeline, NOW)
    assert worker.drain_requested_at_epoch_ms is not None


async def test_the_overview_counts_the_newest_executions_by_status(
    browser: httpx.AsyncClient, records: list[ExecutionRecord]
) -> None:
    await sign_in(browser, CONTROL)
    landing = await browser.get("/console?tenant=acme")
    assert landing.headers["location"] == "/console/tenants/acme/overview"
    html = (await browser.get(landing.headers["location"])).text
    assert "The newest 2 executions by status" in html
    assert 'executions?status=DLQ">1</a>' in html and 'executions?status=RUNNING">1</a>' in html


async def test_the_inbox_lists_a_waiting_order_and_its_form_keeps_a_wrong_answer(
    browser: httpx.AsyncClient, coordinator: InMemoryCoordinator, records: list[ExecutionRecord]
) -> None:
    waiting, order_id = records[0], str(uuid.uuid4())
    deadline = now_ms() + 3_600_000
    unit = AwaitUnit(
        tenant_id="acme",
        unit_id="u-1",
        execution_id=waiting.execution_id,
        step_id=AWAIT_STEP,
        step_index=2,
        resume_step=3,
        transport="interaction-api",
        itemized=False,
        total=1,
        deadline_ms=deadline,
        created_at_ms=NOW,
    )
    request = {"orderId": order_id, "customerName": "<b>Ada</b>"}
    interaction = Interaction(
        tenant_id="acme",
        unit_id="u-1",
        item_index=0,
        execution_id=waiting.execution_id,
        step_id=AWAIT_STEP,
        step_index=2,
        correlation_id="c-1",
        idempotency_key="k-1",
        request=json.dumps(request),
        deadline_ms=deadline,
        created_at_ms=NOW,
    )
    await coordinator.await_table.create(unit, [interaction])
    await sign_in(browser, CONTROL)
    listed = (await browser.get(f"/console/tenants/acme/inbox?stepId={AWAIT_STEP}")).text
    assert f"/console/tenants/acme/inbox/{interaction.interaction_id}" in listed
    other = (await browser.get("/console/tenants/acme/inbox?pipelineId=org.other")).text
    assert interaction.interaction_id not in other
    route = f"/console/tenants/acme/inbox/{interaction.interaction_id}"
    form = (await browser.get(route)).text
    assert 'type="radio" class="choice" name="type" value="accepted"' in form
    assert f'name="accepted.orderId" value="{order_id}"' in form
    assert "&lt;b&gt;Ada&lt;/b&gt;" in form
    no_choice = {"csrf": csrf_of(form), "accepted.note": "kept"}
    refused = await browser.post(route, data=no_choice)
    assert refused.status_code == 400
    assert "choose accepted or declined" in refused.text
    assert 'name="accepted.note" value="kept"' in refused.text


def test_a_tenant_token_too_short_to_be_a_secret_stops_the_coordinator() -> None:
    good = Settings(tenant_tokens={ACME_ONLY: ["acme"]})
    assert scoped_tokens(good) == {ACME_ONLY: frozenset({"acme"})}
    with pytest.raises(ConfigurationError, match="TPF_TENANT_TOKENS"):
        scoped_tokens(Settings(tenant_tokens={"short": ["acme"]}))
