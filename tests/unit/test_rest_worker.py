"""The REST worker app and the coordinator's client, over ASGI: no socket, a real handler."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from coordinator.rest_workers import CommandRefused, RestWorkerClient
from examples.orders import orders
from tests.unit.commands import first_command
from tests.workers import ORDER, Counted, command_handler, dispatched
from tpf.contract import Contract
from tpf.pipeline import Pipeline
from tpf.queues import InMemoryQueue
from tpf.rest import CAPABILITIES_PATH, EXECUTE_PATH
from tpf.runtime import InvocationRuntime
from tpf.signing import NonceCache, SignatureRejected, Signer, SigningKey
from tpf.wire import MalformedMessage, TransitionCommand, TransitionResult, WorkerIdentity
from worker.command import epoch_ms
from worker.rest import worker_app

SIGNER = Signer(SigningKey(b"rest-unit-key"))
IDENTITY = WorkerIdentity(worker_id="w-rest", release_version="1.0.0")
ENDPOINT = "http://worker"


class Rig:
    """A REST worker app over a real CommandHandler and in-memory fakes, and a client for it."""

    def __init__(self, *pipelines: Pipeline) -> None:
        self.results = InMemoryQueue("results")
        self.handler = command_handler(
            *pipelines, signer=SIGNER, identity=IDENTITY, results=self.results
        )
        self.nonces = NonceCache()
        self.app = worker_app(self.handler, SIGNER, self.nonces, {"artifactDigest": "sha256:feed"})
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=ENDPOINT
        )
        self.client = RestWorkerClient(SIGNER, InvocationRuntime(role="coordinator"), self.http)

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post(EXECUTE_PATH, content=body, headers=headers)


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.http.aclose()


@pytest.fixture
def counted() -> Counted:
    return Counted()


@pytest.fixture
def rig(rigs: list[Rig], counted: Counted) -> Rig:
    rigs.append(Rig(counted.pipeline, orders))
    return rigs[-1]


def request_headers(
    body: bytes, *, at: int | None = None, signer: Signer = SIGNER
) -> dict[str, str]:
    now = epoch_ms() if at is None else at
    return signer.sign_request("POST", EXECUTE_PATH, body, now_ms=now)


def rejected(reason: str) -> float:
    sample = REGISTRY.get_sample_value(
        "tpf_messages_rejected_total", {"role": "worker", "queue": "rest", "reason": reason}
    )
    return sample or 0.0


def transport_calls(category: str, target: str = ENDPOINT) -> float:
    labels = {"protocol": "rest", "target": target, "category": category}
    return REGISTRY.get_sample_value("tpf_transport_seconds_count", labels) or 0.0


# -- the worker runs what is signed, and signs what it answers -----------------------------------


async def test_a_signed_command_runs_and_returns_a_signed_result_the_client_verifies(
    rig: Rig,
) -> None:
    before = transport_calls("none")
    command = dispatched(first_command(orders, ORDER), SIGNER)
    result = await rig.client.execute(ENDPOINT, command)
    assert (result.outcome, result.transition_key, result.worker) == (
        "COMPLETED",
        "e-1:0:1",
        IDENTITY,
    )
    SIGNER.verify(result, channel="rest-results", now_ms=epoch_ms())
    assert transport_calls("none") == before + 1  # timed through the runtime's transport seam
    assert rig.results.messages == {}  # the answer is the HTTP response, not a queue message


async def test_a_bare_command_is_signed_by_the_client_before_it_is_sent(
    rig: Rig, counted: Counted
) -> None:
    result = await rig.client.execute(ENDPOINT, first_command(counted.pipeline, {"name": "bare"}))
    assert (result.outcome, counted.runs) == ("COMPLETED", ["bare"])


async def test_the_same_request_sent_twice_runs_once(rig: Rig, counted: Counted) -> None:
    body = dispatched(first_command(counted.pipeline, {"name": "once"}), SIGNER).to_json().encode()
    headers = request_headers(body)
    first = await rig.post(body, headers)
    before = rejected("signature")
    replay = await rig.post(body, headers)
    assert (first.status_code, replay.status_code) == (200, 401)
    assert replay.json() == {
        "errorCode": "SIGNATURE_REJECTED",
        "message": "signature rejected: replayed",
    }
    assert (counted.runs, rejected("signature")) == (["once"], before + 1)


def _unsigned(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {}


def _tampered_body(body: bytes) -> tuple[bytes, dict[str, str]]:
    changed = json.loads(body)
    changed["attempt"] = 7
    return json.dumps(changed).encode(), request_headers(body)


def _expired(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, request_headers(body, at=epoch_ms() - 3 * 60_000)


def _from_the_future(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, request_headers(body, at=epoch_ms() + 3 * 60_000)


def _other_key(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, request_headers(body, signer=Signer(SigningKey(b"someone-else")))


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_unsigned, "unsigned"),
        (_tampered_body, "bad signature"),
        (_expired, "expired"),
        (_from_the_future, "skew"),
        (_other_key, "unknown key"),
    ],
    ids=["unsigned", "tampered-body", "expired", "from-the-future", "other-key"],
)
async def test_a_request_that_is_not_validly_signed_is_rejected_and_never_runs(
    rig: Rig, counted: Counted, forge: Any, reason: str
) -> None:
    before = rejected("signature")
    body = (
        dispatched(first_command(counted.pipeline, {"name": "forged"}), SIGNER).to_json().encode()
    )
    response = await rig.post(*forge(body))
    assert response.status_code == 401
    assert response.json() == {
        "errorCode": "SIGNATURE_REJECTED",
        "message": f"signature rejected: {reason}",
    }
    assert (counted.runs, rejected("signature")) == ([], before + 1)


@pytest.mark.parametrize(
    "envelope",
    [
        lambda c: c,  # the dispatcher never signed it
        lambda c: dispatched(c, SIGNER).model_copy(update={"attempt": 7}),  # changed after signing
        lambda c: SIGNER.sign(c, channel="results", now_ms=epoch_ms(), ttl_ms=60_000),
    ],
    ids=["unsigned", "tampered", "other-channel"],
)
async def test_a_signed_request_carrying_a_badly_signed_command_never_runs(
    rig: Rig, counted: Counted, envelope: Any
) -> None:
    body = envelope(first_command(counted.pipeline, {"name": "inner"})).to_json().encode()
    response = await rig.post(body, request_headers(body))
    assert (response.status_code, response.json()["errorCode"]) == (401, "SIGNATURE_REJECTED")
    assert counted.runs == []


async def test_a_signed_request_with_a_body_that_is_no_command_is_a_bad_request(
    rig: Rig, counted: Counted
) -> None:
    before = rejected("malformed")
    for body in (b'{"kind": "command", "tenantId": 42}', b"not json"):
        response = await rig.post(body, request_headers(body))
        assert (response.status_code, response.json()["errorCode"]) == (400, "MALFORMED_COMMAND")
    assert (counted.runs, rejected("malformed")) == ([], before + 2)


async def test_a_command_for_another_release_is_refused_unrun(rig: Rig, counted: Counted) -> None:
    before = rejected("other_release")
    command = first_command(counted.pipeline, {"name": "elsewhere"}).model_copy(
        update={"release_version": "2.0.0"}
    )
    with pytest.raises(CommandRefused) as refused:
        await rig.client.execute(ENDPOINT, dispatched(command, SIGNER))
    assert refused.value.reason == "other_release"
    body = dispatched(command, SIGNER).to_json().encode()
    response = await rig.post(body, request_headers(body))
    assert response.status_code == 409
    assert response.json() == {
        "errorCode": "COMMAND_REFUSED",
        "message": "command refused: other_release",
        "reason": "other_release",
    }
    assert (counted.runs, rejected("other_release")) == ([], before + 2)


async def test_a_command_past_its_deadline_is_refused_unrun(rig: Rig, counted: Counted) -> None:
    late = first_command(counted.pipeline, {"name": "late"}).model_copy(
        update={"deadline_epoch_ms": epoch_ms() - 1}
    )
    with pytest.raises(CommandRefused, match="past_deadline"):
        await rig.client.execute(ENDPOINT, dispatched(late, SIGNER))
    assert counted.runs == []


async def test_a_coordinator_with_another_key_is_refused_as_unauthorized(
    rig: Rig, counted: Counted
) -> None:
    stranger = Signer(SigningKey(b"someone-else"))
    client = RestWorkerClient(stranger, InvocationRuntime(role="coordinator"), rig.http)
    before = transport_calls("auth")
    command = dispatched(first_command(counted.pipeline, {"name": "x"}), stranger)
    with pytest.raises(httpx.HTTPStatusError) as failed:
        await client.execute(ENDPOINT, command)
    assert failed.value.response.status_code == 401
    assert (counted.runs, transport_calls("auth")) == ([], before + 1)


async def test_a_crash_outside_the_steps_answers_500_and_signs_nothing(
    rig: Rig, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(command: TransitionCommand, **_: Any) -> TransitionResult:
        raise RuntimeError("payload store exploded")

    monkeypatch.setattr(rig.handler, "execute", crash)
    body = dispatched(first_command(counted.pipeline, {"name": "boom"}), SIGNER).to_json().encode()
    response = await rig.post(body, request_headers(body))
    assert (response.status_code, response.json()["errorCode"]) == (500, "TRANSITION_CRASHED")


# -- capabilities --------------------------------------------------------------------------------


async def test_capabilities_name_the_worker_its_release_and_contracts(
    rig: Rig, counted: Counted
) -> None:
    found = await rig.client.capabilities(ENDPOINT)
    assert found["workerId"] == "w-rest"
    assert found["releaseVersion"] == "1.0.0"
    assert found["protocols"] == ["rest"]
    assert found["artifactDigest"] == "sha256:feed"
    assert {p["pipelineId"]: p["contractVersion"] for p in found["pipelines"]} == {
        counted.pipeline.id: Contract.from_pipeline(counted.pipeline).version,
        orders.id: Contract.from_pipeline(orders).version,
    }


async def test_capabilities_need_a_signed_request(rig: Rig) -> None:
    response = await rig.http.get(CAPABILITIES_PATH)
    assert (response.status_code, response.json()["errorCode"]) == (401, "SIGNATURE_REJECTED")


# -- the client believes only signed answers to what it asked ------------------------------------


def answer(command: TransitionCommand, **changes: Any) -> TransitionResult:
    result = TransitionResult(
        tenant_id=command.tenant_id,
        execution_id=command.execution_id,
        transition_key=command.transition_key,
        execution_version=command.execution_version,
        outcome="COMPLETED",
        next_step_index=1,
        worker=IDENTITY,
        duration_ms=1,
    )
    return result.model_copy(update=changes)


def signed_answer(
    result: TransitionResult, signer: Signer = SIGNER, channel: str = "rest-results"
) -> TransitionResult:
    # Built when the module is collected, possibly long before the test runs: valid all day.
    return signer.sign(result, channel=channel, now_ms=epoch_ms(), ttl_ms=86_400_000)


COMMAND = dispatched(first_command(orders, ORDER), SIGNER)


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        (answer(COMMAND).to_json(), SignatureRejected, "unsigned"),
        (
            signed_answer(answer(COMMAND)).model_copy(update={"next_step_index": 3}).to_json(),
            SignatureRejected,
            "bad signature",
        ),
        (
            signed_answer(answer(COMMAND), channel="results").to_json(),
            SignatureRejected,
            "bad signature",
        ),
        (
            signed_answer(answer(COMMAND), Signer(SigningKey(b"someone-else"))).to_json(),
            SignatureRejected,
            "unknown key",
        ),
        (
            signed_answer(answer(COMMAND, execution_version=2)).to_json(),
            SignatureRejected,
            "answers another command",
        ),
        (
            signed_answer(answer(COMMAND, transition_key="e-1:0:2")).to_json(),
            SignatureRejected,
            "answers another command",
        ),
        (dispatched(COMMAND, SIGNER).to_json(), MalformedMessage, "command envelope in answer"),
        ("<html>gateway</html>", MalformedMessage, "not a tpf envelope"),
    ],
    ids=[
        "unsigned",
        "tampered",
        "other-channel",
        "other-key",
        "other-version",
        "other-transition",
        "not-a-result",
        "not-json",
    ],
)
async def test_the_client_rejects_a_forged_or_tampered_answer(
    body: str, error: type[Exception], reason: str
) -> None:
    def forged(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode())

    runtime = InvocationRuntime(role="coordinator")
    async with httpx.AsyncClient(transport=httpx.MockTransport(forged)) as http:
        client = RestWorkerClient(SIGNER, runtime, http)
        with pytest.raises(error, match=reason):
            await client.execute("http://forger", COMMAND)


async def test_a_rejected_answer_is_labelled_auth_and_an_unreachable_worker_unavailable() -> None:
    def forged(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer(COMMAND).to_json().encode())

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for handler, target, category, error in (
        (forged, "http://forger", "auth", SignatureRejected),
        (unreachable, "http://gone", "unavailable", httpx.ConnectError),
    ):
        before = transport_calls(category, target)
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = RestWorkerClient(SIGNER, InvocationRuntime(role="coordinator"), http)
            with pytest.raises(error):
                await client.execute(target, COMMAND)
        assert transport_calls(category, target) == before + 1


async def test_the_worker_serves_tpfs_health_routes_without_a_signature() -> None:
    draining = False
    handler = command_handler(signer=SIGNER, identity=IDENTITY, results=InMemoryQueue("r"))
    app = worker_app(handler, SIGNER, NonceCache(), ready=lambda: not draining)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT) as http:
        assert (await http.get("/q/health/live")).json() == {"status": "UP"}
        assert (await http.get("/q/health/ready")).status_code == 200
        draining = True
        down = await http.get("/q/health/ready")
        assert (down.status_code, down.json()) == (503, {"status": "DOWN"})
        assert (await http.get("/q/health/live")).status_code == 200
