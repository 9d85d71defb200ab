"""The REST worker under real uvicorn on a real port, called by the coordinator's client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from coordinator.rest_workers import CommandRefused, RestWorkerClient
from examples.orders import orders
from tests.unit.commands import first_command
from tests.waiting import eventually
from tests.workers import ORDER, Gate, command_handler, dispatched
from tpf.rest import EXECUTE_PATH
from tpf.runtime import InvocationRuntime
from tpf.signing import NonceCache, Signer, SigningKey
from tpf.wire import WorkerIdentity
from tpfctl.stack import free_port
from worker.command import epoch_ms
from worker.rest import serve_rest, worker_app

SIGNER = Signer(SigningKey(b"rest-integration-key"))
IDENTITY = WorkerIdentity(worker_id="w-http", release_version="1.0.0")


@dataclass
class Served:
    endpoint: str
    stop: asyncio.Event
    serving: asyncio.Task[None]


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def served(gate: Gate) -> AsyncIterator[Served]:
    handler = command_handler(orders, gate.pipeline, signer=SIGNER, identity=IDENTITY)
    port = free_port()
    stop, listening = asyncio.Event(), asyncio.Event()
    app = worker_app(handler, SIGNER, NonceCache())
    serving = asyncio.create_task(
        serve_rest(app, "127.0.0.1", port, stop, listening=listening), name="rest-worker"
    )
    ready = asyncio.create_task(listening.wait())
    await asyncio.wait([ready, serving], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    assert listening.is_set(), "the REST worker did not start listening"
    try:
        yield Served(f"http://127.0.0.1:{port}", stop, serving)
    finally:
        gate.opened.set()
        stop.set()
        await asyncio.wait_for(serving, timeout=10)


async def test_a_signed_command_runs_over_http_and_its_result_verifies(served: Served) -> None:
    async with RestWorkerClient(SIGNER, InvocationRuntime(role="coordinator")) as client:
        result = await client.execute(
            served.endpoint, dispatched(first_command(orders, ORDER), SIGNER)
        )
        capabilities = await client.capabilities(served.endpoint)
    assert (result.outcome, result.transition_key, result.worker) == (
        "COMPLETED",
        "e-1:0:1",
        IDENTITY,
    )
    assert result.signature is not None
    assert (capabilities["workerId"], capabilities["protocols"]) == ("w-http", ["rest"])


async def test_a_replayed_request_is_refused_over_http(served: Served, gate: Gate) -> None:
    gate.opened.set()
    body = dispatched(first_command(gate.pipeline, {"name": "once"}), SIGNER).to_json().encode()
    headers = {
        **SIGNER.sign_request("POST", EXECUTE_PATH, body, now_ms=epoch_ms()),
        "Content-Type": "application/json",
    }
    async with httpx.AsyncClient(base_url=served.endpoint) as http:
        first = await http.post(EXECUTE_PATH, content=body, headers=headers)
        replay = await http.post(EXECUTE_PATH, content=body, headers=headers)
    assert (first.status_code, replay.status_code) == (200, 401)
    assert gate.started == ["once"]


async def test_a_command_for_another_release_is_refused_over_http(
    served: Served, gate: Gate
) -> None:
    other = first_command(gate.pipeline, {"name": "elsewhere"}).model_copy(
        update={"release_version": "9.9.9"}
    )
    async with RestWorkerClient(SIGNER, InvocationRuntime(role="coordinator")) as client:
        with pytest.raises(CommandRefused, match="other_release"):
            await client.execute(served.endpoint, dispatched(other, SIGNER))
    assert gate.started == []


async def refuses_connections(endpoint: str) -> bool:
    """A stopping server either refuses the connection or, when it had already accepted it
    as the listener closed, hangs up without answering (seen as a protocol error or a reset
    while reading): all mean no new call runs. An answer means it still serves."""
    try:
        async with httpx.AsyncClient() as http:
            await http.get(endpoint + "/q/health/live")
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return True
    return False


async def test_stopping_the_server_lets_a_running_transition_answer_first(
    served: Served, gate: Gate
) -> None:
    async with RestWorkerClient(SIGNER, InvocationRuntime(role="coordinator")) as client:
        command = dispatched(first_command(gate.pipeline, {"name": "in-flight"}), SIGNER)
        call = asyncio.create_task(client.execute(served.endpoint, command))

        async def started() -> bool:
            return gate.started == ["in-flight"]

        await eventually(started, interval=0.01)
        served.stop.set()
        deadline = asyncio.get_running_loop().time() + 10
        while not await refuses_connections(served.endpoint):  # no new calls once stopping
            assert asyncio.get_running_loop().time() < deadline, "still accepting connections"
        assert not (served.serving.done() or call.done())
        gate.opened.set()
        result = await asyncio.wait_for(call, timeout=10)
    await asyncio.wait_for(served.serving, timeout=10)
    assert result.outcome == "COMPLETED"
