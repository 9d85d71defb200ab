from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tpf.errors import ConfigurationError
from tpf.queues import BATCH, InMemoryQueue, Outgoing, Received
from tpf.wire import AwaitCompletion, AwaitRequest, Payload, decode
from tpfctl import provider_mock
from tpfctl.provider_mock import MockBehaviour, Pacer, ProviderMock


def decide(payload: dict[str, Any]) -> dict[str, Any]:
    approved = float(payload["amount"]) < 100
    return {
        "paymentId": payload["paymentId"],
        "status": "APPROVED" if approved else "REJECTED",
        "providerReference": f"ref-{payload['paymentId']}",
    }


def request(n: int, *, tenant: str = "acme") -> AwaitRequest:
    return AwaitRequest(
        tenant_id=tenant,
        execution_id=f"e-{n}",
        unit_id=f"u-{n}",
        interaction_id=f"i-{n}",
        correlation_id=f"c-{n}",
        step_id="pay",
        step_index=1,
        item_index=n,
        idempotency_key=f"k-{n}",
        deadline_epoch_ms=2**41,
        request_payload={
            "line": n,
            "paymentId": f"p-{n}",
            "recipient": "Ada",
            "amount": f"{50 + n * 10}.00",
            "currency": "EUR",
        },
    )


class TimedQueue(InMemoryQueue):
    """Records when messages were received and sent; dead-letters after ``max_receives``."""

    def __init__(self, name: str, *, max_receives: int | None = None) -> None:
        super().__init__(name)
        self.max_receives = max_receives
        self.dead: list[str] = []
        self.received_at: dict[str, float] = {}
        self.sent_at: list[float] = []

    async def receive(self, *, max_messages: int = BATCH, wait_s: int = 20) -> list[Received]:
        batch = await super().receive(max_messages=max_messages, wait_s=wait_s)
        kept = []
        for message in batch:
            if self.max_receives is not None and message.receive_count > self.max_receives:
                self.dead.append(self.messages.pop(message.message_id).body)
            else:
                self.received_at.setdefault(message.message_id, self._now())
                kept.append(message)
        return kept

    async def send(self, message: Outgoing) -> None:
        self.sent_at.append(self._now())
        await super().send(message)


def bodies(queue: InMemoryQueue) -> list[str]:
    return [m.body for m in queue.messages.values()]


async def run_until(mock: ProviderMock, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Run ``mock`` until ``done()``, then stop it; it must return before the deadline too."""
    stop = asyncio.Event()
    task = asyncio.create_task(mock.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not done():
            if task.done():
                task.result()
                raise AssertionError("the mock returned before it was stopped")
            if loop.time() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; stats {mock.stats}")
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=timeout)


async def setup(
    behaviour: MockBehaviour, messages: Sequence[str], **queue: Any
) -> tuple[ProviderMock, TimedQueue, TimedQueue]:
    requests, completions = TimedQueue("await-requests", **queue), TimedQueue("await-completions")
    await requests.send_many([Outgoing(body) for body in messages])
    mock = ProviderMock(
        requests=requests, completions=completions, behaviour=behaviour, decide=decide, wait_s=1
    )
    return mock, requests, completions


async def test_answers_carry_the_request_ids_and_the_decided_payload() -> None:
    sent = [request(n) for n in range(12)]
    mock, requests, completions = await setup(MockBehaviour(), [r.to_json() for r in sent])

    await run_until(mock, lambda: mock.stats["answered"] == 12)

    assert not requests.messages
    answers = [decode(body) for body in bodies(completions)]
    by_interaction = {a.interaction_id: a for a in answers if isinstance(a, AwaitCompletion)}
    assert len(answers) == len(by_interaction) == 12
    for r in sent:
        answer = by_interaction[r.interaction_id]
        assert answer.tenant_id == r.tenant_id
        assert answer.correlation_id == r.correlation_id
        assert answer.idempotency_key == r.idempotency_key
        assert answer.actor == "provider-mock"
        assert answer.completed_at_epoch_ms is not None
        assert answer.response_payload.payload_type_id == "payments.ProviderAnswer"
        assert answer.response_payload.payload is not None
        assert json.loads(answer.response_payload.payload) == decide(r.request_payload)
    expected = {"received": 12, "answered": 12, "dropped": 0, "duplicated": 0, "malformed": 0}
    assert mock.stats == expected


async def test_dropped_requests_are_deleted_and_never_answered() -> None:
    mock, requests, completions = await setup(
        MockBehaviour(drop_rate=1.0), [request(n).to_json() for n in range(15)]
    )

    await run_until(mock, lambda: mock.stats["dropped"] == 15)

    assert not requests.messages
    assert not completions.messages
    assert mock.stats["answered"] == 0


async def test_duplicated_requests_are_answered_twice_with_the_same_completion() -> None:
    mock, requests, completions = await setup(
        MockBehaviour(duplicate_rate=1.0), [request(n).to_json() for n in range(5)]
    )

    await run_until(mock, lambda: mock.stats["answered"] == 5)

    assert not requests.messages
    per_interaction: dict[str, list[str]] = {}
    for body in bodies(completions):
        answer = decode(body)
        assert isinstance(answer, AwaitCompletion)
        per_interaction.setdefault(str(answer.interaction_id), []).append(body)
    assert sorted(per_interaction) == sorted(f"i-{n}" for n in range(5))
    for copies in per_interaction.values():
        assert len(copies) == 2
        assert copies[0] == copies[1]
    assert mock.stats["duplicated"] == 5


async def test_answers_wait_the_delay_after_receipt_without_blocking_other_requests() -> None:
    delay = 0.3
    mock, requests, completions = await setup(
        MockBehaviour(delay_s=delay), [request(n).to_json() for n in range(25)]
    )

    await run_until(mock, lambda: mock.stats["answered"] == 25)

    earliest_receipt = min(requests.received_at.values())
    latest_receipt = max(requests.received_at.values())
    assert len(requests.received_at) == 25
    assert min(completions.sent_at) >= earliest_receipt + delay
    # Every batch was taken while the first answers were still waiting: no request waits on
    # another's delay.
    assert latest_receipt < min(completions.sent_at)
    answered_at = sorted(completions.sent_at)
    received_at = sorted(requests.received_at.values())
    assert all(a >= r + delay for a, r in zip(answered_at, received_at, strict=True))


async def test_malformed_requests_go_back_until_dead_lettered_and_the_loop_continues() -> None:
    wrong_kind = AwaitCompletion(
        tenant_id="acme", response_payload=Payload(payload_type_id="x", payload="{}")
    ).to_json()
    undecidable = request(99).model_copy(update={"request_payload": {"line": 1}}).to_json()
    messages = ["not json", wrong_kind, undecidable, request(1).to_json()]
    mock, requests, completions = await setup(MockBehaviour(), messages, max_receives=3)

    # Each bad message is made visible again at once, received 3 times, then dead-lettered.
    await run_until(mock, lambda: len(requests.dead) == 3 and mock.stats["answered"] == 1)

    assert sorted(requests.dead) == sorted(messages[:3])
    assert not requests.messages
    assert mock.stats["malformed"] == 9
    assert len(completions.messages) == 1


async def test_a_malformed_request_is_made_visible_again() -> None:
    requests, completions = InMemoryQueue("await-requests"), InMemoryQueue("await-completions")
    await requests.send(Outgoing("{}"))
    mock = ProviderMock(
        requests=requests, completions=completions, behaviour=MockBehaviour(), decide=decide
    )

    await run_until(mock, lambda: mock.stats["malformed"] >= 2)

    (stored,) = requests.messages.values()
    assert stored.receives >= 2  # handed back at once, not after the visibility timeout
    assert stored.visible_at <= asyncio.get_running_loop().time()
    assert not completions.messages


async def test_stopping_hands_back_requests_still_waiting_their_delay() -> None:
    requests, completions = InMemoryQueue("await-requests"), InMemoryQueue("await-completions")
    await requests.send(Outgoing(request(1).to_json()))
    mock = ProviderMock(
        requests=requests,
        completions=completions,
        behaviour=MockBehaviour(delay_s=60),
        decide=decide,
        grace_s=0.05,
    )

    await run_until(mock, lambda: mock.stats["received"] == 1)  # then stop: returns at once

    (stored,) = requests.messages.values()
    assert stored.visible_at <= asyncio.get_running_loop().time()
    assert not completions.messages
    assert mock.stats["answered"] == 0


async def answered_interactions(behaviour: MockBehaviour) -> set[str]:
    mock, _, completions = await setup(behaviour, [request(n).to_json() for n in range(40)])
    await run_until(mock, lambda: mock.stats["answered"] + mock.stats["dropped"] == 40)
    answers = [decode(body) for body in bodies(completions)]
    return {
        a.interaction_id for a in answers if isinstance(a, AwaitCompletion) and a.interaction_id
    }


async def test_a_seed_makes_drop_choices_repeatable() -> None:
    first = await answered_interactions(MockBehaviour(drop_rate=0.5, seed=7))
    again = await answered_interactions(MockBehaviour(drop_rate=0.5, seed=7))
    other = await answered_interactions(MockBehaviour(drop_rate=0.5, seed=8))

    assert first == again
    assert 0 < len(first) < 40
    assert other != first


async def test_the_pacer_holds_sends_to_the_rate_after_a_burst() -> None:
    pacer = Pacer(per_second=100, burst=10)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await asyncio.gather(*(pacer.acquire() for _ in range(30)))

    assert loop.time() - started >= 0.95 * (30 - 10) / 100  # (float slack, not a bound)


@pytest.mark.parametrize(
    "values",
    [{"drop_rate": 1.5}, {"duplicate_rate": -0.1}, {"per_second": 0}, {"delay_s": -1}],
)
def test_behaviour_rejects_impossible_values(values: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        MockBehaviour(**values)  # type: ignore[arg-type]


def test_the_default_decision_names_the_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider_mock, "RECORDS_MODULE", "examples.no_such_records")
    with pytest.raises(ConfigurationError, match=r"examples\.no_such_records"):
        provider_mock.default_decide(request(1).request_payload)


def test_the_command_lists_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tpfctl", "provider-mock", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    for option in ("--delay", "--drop-rate", "--duplicate-rate", "--rate", "--seed"):
        assert option in done.stdout
