"""The provider mock on real queues: every await request answered once, then the queue drained."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.substrates import TestStack
from tpf.queues import Outgoing, SqsQueue
from tpf.substrate import open_clients
from tpf.wire import AwaitCompletion, AwaitRequest, MalformedMessage, decode
from tpfctl.provider_mock import MockBehaviour, ProviderMock

REQUESTS = 25


@pytest.fixture(params=["embedded", "localstack"])
def stack(request: pytest.FixtureRequest) -> TestStack:
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    return stack


def decide(payload: dict[str, Any]) -> dict[str, Any]:
    return {"paymentId": payload["paymentId"], "status": "APPROVED", "fee": "0.10"}


def await_request(tenant: str, n: int) -> AwaitRequest:
    return AwaitRequest(
        tenant_id=tenant,
        execution_id=f"e-{n}",
        unit_id=f"u-{n}",
        interaction_id=f"{tenant}-i-{n}",
        correlation_id=f"{tenant}-c-{n}",
        step_id="pay",
        step_index=1,
        item_index=n,
        idempotency_key=f"{tenant}-k-{n}",
        deadline_epoch_ms=2**41,
        request_payload={
            "line": n,
            "paymentId": f"p-{n}",
            "recipient": "Ada",
            "amount": "12.50",
            "currency": "EUR",
        },
    )


def ours(body: str, tenant: str) -> AwaitCompletion | AwaitRequest | None:
    try:
        envelope = decode(body)
    except MalformedMessage:
        return None
    if isinstance(envelope, AwaitCompletion | AwaitRequest) and envelope.tenant_id == tenant:
        return envelope
    return None


async def test_every_request_is_answered_once_on_real_queues(stack: TestStack) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"  # other tests' leftovers belong to other tenants
    settings = stack.settings
    wait_s = int(settings.timings.long_poll.total_seconds())
    async with open_clients(settings, endpoints=stack.endpoints) as aws:
        requests = await SqsQueue.open(aws.sqs, settings.resource("await-requests"))
        completions = await SqsQueue.open(aws.sqs, settings.resource("await-completions"))
        sent = {r.interaction_id: r for r in (await_request(tenant, n) for n in range(REQUESTS))}
        await requests.send_many([Outgoing(r.to_json()) for r in sent.values()])

        mock = ProviderMock(
            requests=requests,
            completions=completions,
            behaviour=MockBehaviour(),
            decide=decide,
            wait_s=wait_s,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(mock.run(stop))
        answers: list[AwaitCompletion] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        try:
            while len(answers) < REQUESTS:
                assert loop.time() < deadline, f"{len(answers)} answers; stats {mock.stats}"
                assert not running.done(), "the mock stopped by itself"
                for message in await completions.receive(wait_s=wait_s):
                    answer = ours(message.body, tenant)
                    if isinstance(answer, AwaitCompletion):
                        answers.append(answer)
                        await completions.delete(message.receipt)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=10)

        by_interaction = {a.interaction_id: a for a in answers}
        assert len(answers) == len(by_interaction) == REQUESTS
        assert set(by_interaction) == set(sent)
        for interaction_id, answer in by_interaction.items():
            request = sent[str(interaction_id)]
            assert answer.correlation_id == request.correlation_id
            assert answer.idempotency_key == request.idempotency_key
            assert answer.actor == "provider-mock"
            assert answer.response_payload.payload_type_id == "payments.ProviderAnswer"
            assert answer.response_payload.payload is not None
            assert json.loads(answer.response_payload.payload) == decide(request.request_payload)
        assert mock.stats["answered"] >= REQUESTS
        assert mock.stats["malformed"] == mock.stats["dropped"] == 0

        # The mock deleted every request of ours; nothing of ours remains on either queue.
        for queue in (requests, completions):
            leftovers = await queue.receive(wait_s=1)
            assert not [m for m in leftovers if ours(m.body, tenant) is not None]
            for message in leftovers:  # someone else's: hand it straight back
                await queue.change_visibility(message.receipt, 0)
