"""Hostile input at every edge: generated bodies that no one here wrote.

Each consumer and route gets valid envelopes with hostile fields, deep nesting, huge numbers,
non-ASCII text, wrong kinds and truncated JSON. Whatever arrives, nothing escapes the handler,
the message is settled deliberately (deleted, or left for the queue's redrive policy), and the
replica is still ready afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.api import create_app
from coordinator.interactions import interactions_router
from coordinator.limits import BodyLimit
from coordinator.testing import InMemoryCoordinator
from examples.orders import orders
from tests.unit.commands import first_command
from tests.waiting import eventually
from tests.workers import ORDER, command_handler
from tpf.errors import ConfigurationError, InvalidInput
from tpf.loops import LoopHealth, supervised
from tpf.queues import InMemoryQueue, Outgoing, Received
from tpf.signing import SIGNATURE_HEADER, NonceCache, SignatureRejected, Signer, SigningKey
from tpf.untrusted import MAX_DEPTH, parse_json
from tpf.wire import AwaitCompletion, Payload, WorkerIdentity
from worker.command import CommandHandler

CONTROL, ADMIN = "control-token-0123456789", "admin-token-0123456789"
SIGNER = Signer(SigningKey(b"hostile-key"))
EXAMPLES = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def nested(depth: int, closed: bool = True) -> str:
    return "[" * depth + ("]" * depth if closed else "")


HOSTILE_JSON = st.one_of(
    st.integers(MAX_DEPTH + 1, 20_000).map(nested),
    st.integers(1, 20_000).map(lambda n: nested(n, closed=False)),
    st.integers(101, 6_000).map(lambda n: "1" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "[1e999]", '{"a": -1e400}', '"\\ud800"']),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def completion(payload: str, **fields: object) -> str:
    envelope = AwaitCompletion(
        tenant_id="acme",
        correlation_id="c-1",
        response_payload=Payload(payload_type_id="x", payload=payload),
    )
    return json.dumps({**json.loads(envelope.to_json()), **fields})


def truncated(text: str) -> st.SearchStrategy[str]:
    return st.integers(0, len(text) - 1).map(lambda cut: text[:cut])


COMPLETION_BODIES = st.one_of(
    HOSTILE_JSON,
    HOSTILE_JSON.map(completion),
    truncated(completion('{"ok": true}')),
    st.sampled_from(["command", "result", "heartbeat", "nonsense", ""]).map(
        lambda kind: completion("{}", kind=kind)
    ),
    st.text(max_size=50).map(lambda tenant: completion("{}", tenantId=tenant)),
    st.integers().map(lambda protocol: completion("{}", protocol=protocol)),
)


SETTLED = ("deleted", "released")


async def one_message(queue: InMemoryQueue, body: str) -> Received:
    await queue.send(Outgoing(body))
    [message] = await queue.receive(wait_s=0)
    return message


async def settled_after(
    queue: InMemoryQueue, handle: Callable[[Received], Awaitable[object]], body: str
) -> str:
    """Send ``body``, receive it, let ``handle`` have it (it must not raise), say how it ended."""
    message = await one_message(queue, body)
    await handle(message)
    return settled(queue, message)


def settled(queue: InMemoryQueue, message: Received) -> str:
    """Deleted for good, or released at once for the redrive policy to count; never just left
    to wait out a visibility timeout, which is what an exception that escaped would do."""
    stored = queue.messages.get(message.message_id)
    if stored is None:
        return "deleted"
    now = asyncio.get_running_loop().time()
    return "released" if stored.visible_at <= now else "left in flight"


# -- the decoding edge ---------------------------------------------------------------------------


@EXAMPLES
@given(HOSTILE_JSON)
def test_the_decoding_edge_answers_every_text_with_a_value_or_invalid_input(raw: str) -> None:
    try:
        parse_json(raw)
    except InvalidInput as refused:
        assert str(refused)


def test_the_reported_poison_is_invalid_input_with_a_pointer() -> None:
    for raw in (nested(5_000, closed=False), "9" * 5_000, nested(100)):
        with pytest.raises(InvalidInput):
            parse_json(raw, pointer="/payload")
    with pytest.raises(InvalidInput) as deep:
        parse_json(nested(MAX_DEPTH + 1), pointer="/payload")
    assert deep.value.pointer.startswith("/payload/0/0")


# -- consumers -----------------------------------------------------------------------------------


@EXAMPLES
@given(COMPLETION_BODIES)
async def test_no_completion_stops_the_completion_consumer(body: str) -> None:
    coordinator = InMemoryCoordinator.create()
    queue = coordinator.await_completions
    assert await settled_after(queue, coordinator.completions.handle, body) in SETTLED


async def test_the_reported_completion_poison_is_settled_and_the_round_goes_on() -> None:
    coordinator = InMemoryCoordinator.create()
    queue = coordinator.await_completions
    await queue.send(Outgoing(completion("[" * 5_000)))
    await queue.send(Outgoing(completion('{"ok": true}', correlationId="c-unknown")))
    messages = await queue.receive(wait_s=0)
    await coordinator.completions.handle_many(messages)
    assert queue.messages == {}, "both refused for good: a bad payload, an unknown interaction"


RESULT_BODIES = st.one_of(
    HOSTILE_JSON,
    st.sampled_from(["result", "heartbeat", "presence", "misrouted", "command", "x"]).map(
        lambda kind: json.dumps({"kind": kind, "protocol": 1, "tenantId": "acme"})
    ),
)


@EXAMPLES
@given(RESULT_BODIES)
async def test_no_result_stops_the_results_consumer(body: str) -> None:
    coordinator = InMemoryCoordinator.create()
    queue = coordinator.results_queue
    assert await settled_after(queue, coordinator.results.handle, body) in SETTLED


@EXAMPLES
@given(st.one_of(HOSTILE_JSON, HOSTILE_JSON.map(lambda s: json.dumps({"Records": s}))))
async def test_no_notification_stops_ingest(body: str) -> None:
    coordinator = InMemoryCoordinator.create()
    queue = coordinator.ingest_queue
    assert await settled_after(queue, coordinator.ingest.handle, body) in SETTLED


def orders_worker(results: InMemoryQueue) -> CommandHandler:
    return command_handler(
        orders,
        signer=SIGNER,
        identity=WorkerIdentity(worker_id="w", release_version="1.0.0"),
        results=results,
    )


@EXAMPLES
@given(
    st.one_of(
        HOSTILE_JSON,
        HOSTILE_JSON.map(lambda s: json.dumps({"kind": "command", "protocol": 1, "input": s})),
    )
)
async def test_no_command_stops_a_worker(body: str) -> None:
    results = InMemoryQueue("results")
    handler = orders_worker(results)
    work = InMemoryQueue("work")
    message = await one_message(work, body)
    await handler.handle(message)
    assert results.messages == {}, "a rejected command answers nothing"


async def test_a_genuine_command_still_runs_after_the_poison() -> None:
    results = InMemoryQueue("results")
    handler = orders_worker(results)
    work = InMemoryQueue("work")
    await handler.handle(await one_message(work, nested(5_000, closed=False)))
    command = SIGNER.sign(
        first_command(orders, ORDER), channel="work", now_ms=0, ttl_ms=10**13
    ).to_json()
    await handler.handle(await one_message(work, command))
    assert len(results.messages) == 1


# -- HTTP ----------------------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    coordinator = InMemoryCoordinator.create()
    app = create_app(
        coordinator.service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        routers=[interactions_router(coordinator.awaits)],
        max_body_bytes=4096,
    )
    app.state.ready = True
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        client.headers["Authorization"] = f"Bearer {CONTROL}"
        yield client


ROUTES = [
    "/tpf/control-plane/tenants/acme/executions",
    "/tpf/control-plane/tenants/acme/interactions/complete",
]


@settings(max_examples=40, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(ROUTES), st.one_of(HOSTILE_JSON, HOSTILE_JSON.map(completion)))
async def test_no_body_a_client_sends_gets_a_5xx(
    http: httpx.AsyncClient, route: str, body: str
) -> None:
    response = await http.post(route, content=body.encode("utf-8", "surrogatepass"))
    assert response.status_code < 500, response.text
    assert (await http.get("/q/health/ready")).status_code == 200


async def test_the_reported_request_poison_is_a_400_with_a_pointer(http: httpx.AsyncClient) -> None:
    route = ROUTES[0]
    for body in (nested(100_000, closed=False)[:4000], "1" * 4000, nested(MAX_DEPTH + 1)):
        response = await http.post(route, content=body)
        assert response.status_code == 400, (body[:20], response.text)
    deep = await http.post(route, content=nested(MAX_DEPTH + 1))
    assert deep.json()["pointer"].startswith("/0/0")


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(
    http: httpx.AsyncClient,
) -> None:
    declared = await http.post(ROUTES[0], content=b"{" + b" " * 5000 + b"}")
    assert (declared.status_code, declared.json()["errorCode"]) == (413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    streamed = await http.post(ROUTES[0], content=chunks())
    assert streamed.status_code == 413


async def test_a_body_limit_refuses_a_declared_length_that_is_no_number() -> None:
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the route must not run")

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    limit = BodyLimit(app, limit=10)  # type: ignore[arg-type]
    await limit({"type": "http", "headers": [(b"content-length", b"-1")]}, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 413


@settings(max_examples=40, suppress_health_check=list(HealthCheck))
@given(st.text(st.characters(blacklist_characters="\r\n\x00"), min_size=1, max_size=40))
async def test_a_non_ascii_or_wrong_token_is_401(http: httpx.AsyncClient, token: str) -> None:
    raw = f"Bearer {token}".encode("utf-8", "surrogatepass")
    response = await http.get(
        "/tpf/control-plane/tenants/acme/executions/e-1",
        headers={"Authorization": raw},
    )
    assert response.status_code == 401


async def test_an_empty_bearer_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/tpf/control-plane/tenants/acme/executions/e-1", headers={"Authorization": "Bearer "}
    )
    assert response.status_code == 401


# -- signatures ----------------------------------------------------------------------------------


@EXAMPLES
@given(st.text(max_size=60))
def test_a_non_ascii_resume_token_is_rejected_not_a_crash(token: str) -> None:
    with pytest.raises(SignatureRejected):
        SIGNER.read_token(token)


@EXAMPLES
@given(st.text(max_size=60))
def test_a_non_ascii_request_signature_is_rejected_not_a_crash(signature: str) -> None:
    headers = SIGNER.sign_request("POST", "/p", b"", now_ms=0) | {SIGNATURE_HEADER: signature}
    with pytest.raises(SignatureRejected):
        SIGNER.verify_request("POST", "/p", headers, b"", now_ms=0, nonces=NonceCache())


# -- loops ---------------------------------------------------------------------------------------


async def test_a_loop_that_raises_is_restarted_and_readiness_falls_after_repeated_failures() -> (
    None
):
    health = LoopHealth(limit=3, window_s=60)
    stop = asyncio.Event()
    runs = 0

    async def flaky(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("a bug")
        await stop.wait()

    task = asyncio.create_task(
        supervised("flaky", flaky, stop, health=health, role="test", backoff=(0.01, 0.02))
    )

    async def third_run() -> bool:
        return runs >= 3

    await eventually(third_run, timeout=5, interval=0.01)
    assert (health.restarts, health.ready) == (2, True)
    health.failed()
    assert not health.ready, "three failures within the window: DOWN"
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_a_configuration_error_ends_the_replica_instead_of_a_restart() -> None:
    async def misconfigured(stop: asyncio.Event) -> None:
        raise ConfigurationError("no such table")

    with pytest.raises(ConfigurationError):
        await supervised("bad", misconfigured, asyncio.Event(), health=LoopHealth(), role="test")


# -- every route ---------------------------------------------------------------------------------


@pytest.fixture
async def every_route() -> AsyncIterator[tuple[httpx.AsyncClient, list[tuple[str, str]]]]:
    """The app a replica serves, with every router, and its (method, path template) pairs."""
    from fastapi.routing import APIRoute

    from coordinator.role import admin_routers
    from tpf.artifacts.memory import InMemoryArtifactReader

    coordinator = InMemoryCoordinator.create()
    app = create_app(
        coordinator.service,
        control_plane_token=CONTROL,
        admin_token=ADMIN,
        routers=admin_routers(coordinator, InMemoryArtifactReader()),
    )
    app.state.ready = True
    routes = sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client, routes


SEGMENTS = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(["..", "%2e%2e", "a" * 2000, "\u00e9\u00e9", "{x}", "-1", "0" * 400]),
)


@settings(max_examples=150, suppress_health_check=list(HealthCheck))
@given(st.data())
async def test_no_route_answers_a_hostile_request_with_a_5xx(
    every_route: tuple[httpx.AsyncClient, list[tuple[str, str]]], data: st.DataObject
) -> None:
    http, routes = every_route
    method, template = data.draw(st.sampled_from(routes))
    path = "".join(
        quote(data.draw(SEGMENTS), safe="") if part.startswith("{") else part
        for part in re.split(r"(\{[^}]+\})", template)
    )
    token = ADMIN if template.startswith("/tpf/admin") else CONTROL
    body = data.draw(st.one_of(HOSTILE_JSON, HOSTILE_JSON.map(completion), st.just("{}")))
    query = data.draw(
        st.dictionaries(st.sampled_from(["limit", "cursor", "status"]), st.text(max_size=20))
    )
    response = await http.request(
        method,
        path,
        params=query,
        content=body.encode("utf-8", "surrogatepass"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code < 500, (method, template, response.text[:300])
