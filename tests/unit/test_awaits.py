"""Awaits over the in-memory coordinator, with the real worker code running the transitions:
restaurant approval, completion semantics, deadlines, re-drive, tokens, a plug-in transport."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal

import pytest

from coordinator.awaits.completing import canonical
from coordinator.awaits.model import AwaitUnit, Interaction, UnitStatus
from coordinator.testing import InMemoryCoordinator
from examples.restaurant_approval import AWAIT_STEP, restaurant_approval
from tests.unit.drive import WORKER, commands
from tpf.clock import now_ms
from tpf.errors import Conflict, InvalidInput, NotFound
from tpf.payloads import digest_of
from tpf.pipeline import Pipeline
from tpf.queues import Outgoing
from tpf.records import Status
from tpf.runtime import InvocationRuntime
from tpf.settings import Settings
from tpf.signing import PROVIDER_CHANNEL, Signer, SigningKey
from tpf.wire import AwaitCompletion, Payload
from worker.transition import run_transition

ORDER = {
    "requestId": "7d0c8f1e-3b7a-4b8e-9c61-2f4a5d6e7f80",
    "customerName": "Ada",
    "restaurantName": "Chez Lovelace",
    "items": "soup",
    "totalAmount": "23.50",
    "currency": "EUR",
}


@pytest.fixture
async def c() -> InMemoryCoordinator:
    coordinator = InMemoryCoordinator.create()
    await coordinator.register(restaurant_approval)
    return coordinator


async def drive(c: InMemoryCoordinator, *pipelines: Pipeline) -> None:
    """Run every queued command with the real worker code until none is left."""
    by_id = {p.id: p for p in (*pipelines, restaurant_approval)}
    while found := await commands(c):
        for command in found:
            result = await run_transition(
                by_id[command.pipeline_id],
                command,
                payloads=c.payloads,
                runtime=InvocationRuntime(),
                worker=WORKER,
            )
            await c.committer.commit(result, now_ms=command.deadline_epoch_ms - 1)


async def parked(c: InMemoryCoordinator, key: str = "k") -> tuple[str, dict[str, Any]]:
    outcome = await c.service.submit(
        tenant_id="acme",
        pipeline_id=restaurant_approval.id,
        value=ORDER,
        idempotency_key=key,
        now_ms=1_000,
    )
    await drive(c)
    execution_id = outcome.record.execution_id
    record = await c.service.status("acme", execution_id)
    assert record.status is Status.WAITING_EXTERNAL
    [pending] = [
        i
        for i in await c.awaits.pending("acme", step_id=AWAIT_STEP)
        if i.execution_id == execution_id
    ]
    return execution_id, {"interaction": pending, "request": json.loads(pending.request)}


def accepted(order_id: str) -> dict[str, Any]:
    return {"accepted": {"orderId": order_id, "decidedAt": "2026-11-21T12:00:00Z", "note": "ok"}}


async def result(c: InMemoryCoordinator, execution_id: str) -> Any:
    return (await c.service.result("acme", execution_id)).result


async def test_an_accepted_order_is_approved_exactly_once(c: InMemoryCoordinator) -> None:
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    order_id = parked_at["request"]["orderId"]
    done = await c.awaits.complete(
        "acme",
        response=accepted(order_id),
        interaction_id=interaction.interaction_id,
        idempotency_key="decision-1",
        actor="chef",
    )
    assert not done.duplicate
    await drive(c)
    outcome = await result(c, execution_id)
    assert (outcome["outcome"], outcome["orderId"]) == ("APPROVED", order_id)
    assert await c.awaits.pending("acme") == []

    again = await c.awaits.complete(
        "acme", response=accepted(order_id), interaction_id=interaction.interaction_id
    )
    assert again.duplicate
    assert await commands(c) == []  # resumed once
    with pytest.raises(Conflict) as conflict:
        await c.awaits.complete(
            "acme",
            response={"declined": {"orderId": order_id, "declineReason": "closed"}},
            interaction_id=interaction.interaction_id,
        )
    assert conflict.value.code == "INTERACTION_ALREADY_COMPLETED"


async def test_the_inbox_lists_an_interaction_only_once_its_unit_is_open(
    c: InMemoryCoordinator,
) -> None:
    """A unit's interactions are stored before the unit: in between, listing one would offer
    an answer that is refused, without the type of answer it waits for."""
    _, parked_at = await parked(c)
    listed: Interaction = parked_at["interaction"]
    # Of a unit that is not carried by its interaction (itemized or opened by an earlier main).
    early = replace(listed, unit_id="u-not-open-yet", correlation_id="c-early", carries=None)
    await c.awaits.table.add_interactions([early])

    waiting = await c.awaits.waiting("acme")
    assert [(i.unit_id, output) for i, output in waiting] == [
        (listed.unit_id, "examples.restaurant_approval.RestaurantDecision")
    ]
    assert await c.awaits.pending("acme") == [listed]


@pytest.mark.parametrize(
    ("decision", "terminal"),
    [  # the decisions of TPF's demo client, and the terminal states its IT asserts
        (
            {"accepted": {"note": "Approved by Cafe TPF"}},
            ("APPROVED", "ACCEPTED", "Approved by Cafe TPF"),
        ),
        (
            {
                "declined": {
                    "note": "Need more prep time",
                    "declineReason": "Kitchen is overloaded tonight",
                }
            },
            ("DECLINED", "DECLINED", "Need more prep time (Kitchen is overloaded tonight)"),
        ),
        ({"accepted": {}}, ("APPROVED", "ACCEPTED", "Restaurant approved the order.")),
    ],
)
async def test_the_terminal_state_is_tpfs(
    c: InMemoryCoordinator, decision: dict[str, Any], terminal: tuple[str, str, str]
) -> None:
    execution_id, parked_at = await parked(c)
    order_id = parked_at["request"]["orderId"]
    [(variant, fields)] = decision.items()
    decided_at = "2026-08-22T17:48:23.123456Z"
    response = {variant: {"orderId": order_id, "decidedAt": decided_at, **fields}}
    await c.awaits.complete(
        "acme", response=response, interaction_id=parked_at["interaction"].interaction_id
    )
    await drive(c)
    state = await result(c, execution_id)
    assert set(state) == {"id", "orderId", "outcome", "resolvedAt", "restaurantStatus", "summary"}
    assert (state["outcome"], state["restaurantStatus"], state["summary"]) == terminal
    assert state["orderId"] == order_id and state["resolvedAt"].startswith("2026-08-22T17:48:23")


async def test_a_declined_order_and_completion_by_correlation_id(c: InMemoryCoordinator) -> None:
    execution_id, parked_at = await parked(c)
    order_id = parked_at["request"]["orderId"]
    await c.awaits.complete(
        "acme",
        response={
            "declined": {
                "orderId": order_id,
                "decidedAt": "2026-11-21T12:00:00Z",
                "declineReason": "kitchen closed",
            }
        },
        correlation=parked_at["interaction"].correlation_id,
    )
    await drive(c)
    outcome = await result(c, execution_id)
    assert (outcome["outcome"], outcome["restaurantStatus"]) == ("DECLINED", "DECLINED")
    assert outcome["summary"] == "kitchen closed"


@pytest.mark.parametrize(
    ("order_id", "code"),
    [
        ("not-a-uuid", "DECISION_INVALID"),  # TPF's incident demo
        ("00000000-0000-4000-8000-000000000000", "DECISION_ORDER_MISMATCH"),
    ],
)
async def test_a_wrong_decision_is_accepted_then_fails_at_finalize_and_again_after_redrive(
    c: InMemoryCoordinator, order_id: str, code: str
) -> None:
    execution_id, parked_at = await parked(c)
    await c.awaits.complete(
        "acme",
        response=accepted(order_id),
        interaction_id=parked_at["interaction"].interaction_id,
    )
    await drive(c)
    first = await c.service.status("acme", execution_id)
    assert (first.status, first.error_code) == (Status.FAILED, code)
    assert first.error_message

    await c.operations.redrive("acme", execution_id, actor="ops", now_ms=5_000, allow_failed=True)
    await drive(c)
    second = await c.service.status("acme", execution_id)
    assert (second.status, second.error_code) == (Status.FAILED, code)
    assert second.version > first.version


async def test_an_unanswered_await_times_out_and_a_redrive_opens_a_fresh_unit(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    assert await c.sweep(interaction.deadline_ms - 1) == 0
    assert await c.sweep(interaction.deadline_ms + 1) == 1
    record = await c.service.status("acme", execution_id)
    assert (record.status, record.error_code) == (Status.FAILED, "AWAIT_TIMEOUT")
    assert await c.awaits.pending("acme") == []
    [letter] = await c.dead_letters.receive(wait_s=0)
    assert json.loads(letter.body)["errorCode"] == "AWAIT_TIMEOUT"

    await c.operations.redrive("acme", execution_id, actor="ops", now_ms=5_000, allow_failed=True)
    await drive(c)
    [fresh] = await c.awaits.pending("acme")
    assert fresh.unit_id != interaction.unit_id
    # A re-drive runs the steps anew (new idempotency keys), so a new pending order is minted.
    assert json.loads(fresh.request)["orderId"] != parked_at["request"]["orderId"]


async def answered_then_crashed(c: InMemoryCoordinator) -> tuple[str, Interaction, str]:
    """An order's answer recorded by a coordinator that died before resuming its execution."""
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    assert interaction.solo  # its answer is one write, and the unit counts nothing
    assert interaction.carries is not None  # the unit is carried by its interaction
    order_id = parked_at["request"]["orderId"]
    answer = canonical(accepted(order_id))
    done = interaction.completed(
        response=answer, digest=digest_of(answer.encode()), key=None, actor="chef", now_ms=2
    )
    assert await c.awaits.table.record([done]) == [done]
    unit = await c.awaits.table.get_unit("acme", interaction.unit_id)
    assert unit is not None and unit.status is UnitStatus.COMPLETED  # completed by its answer
    assert (await c.service.status("acme", execution_id)).status is Status.WAITING_EXTERNAL
    return execution_id, interaction, order_id


async def test_a_solo_answer_whose_resume_was_lost_resumes_at_the_deadline_sweep(
    c: InMemoryCoordinator,
) -> None:
    execution_id, interaction, order_id = await answered_then_crashed(c)
    assert await c.sweep(interaction.deadline_ms + 1) == 1
    await drive(c)
    outcome = await result(c, execution_id)
    assert (outcome["outcome"], outcome["orderId"]) == ("APPROVED", order_id)
    progress = await c.awaits.table.get_unit("acme", interaction.unit_id)
    assert progress is not None and progress.status is UnitStatus.COMPLETED


async def test_a_solo_answer_sent_again_after_a_crash_resumes_the_execution(
    c: InMemoryCoordinator,
) -> None:
    execution_id, interaction, order_id = await answered_then_crashed(c)
    again = await c.awaits.complete(
        "acme", response=accepted(order_id), interaction_id=interaction.interaction_id
    )
    assert again.duplicate
    await drive(c)
    outcome = await result(c, execution_id)
    assert (outcome["outcome"], outcome["orderId"]) == ("APPROVED", order_id)


async def test_a_completion_past_the_deadline_is_refused(c: InMemoryCoordinator) -> None:
    _, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    await c.sweep(interaction.deadline_ms + 1)
    with pytest.raises(Conflict) as late:
        await c.awaits.complete(
            "acme",
            response=accepted(parked_at["request"]["orderId"]),
            interaction_id=interaction.interaction_id,
        )
    assert late.value.code == "AWAIT_DEADLINE_PASSED"


async def test_completions_are_checked_against_schema_tenant_and_token(
    c: InMemoryCoordinator,
) -> None:
    _, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    with pytest.raises(InvalidInput) as bad:
        await c.awaits.complete(
            "acme",
            response={"accepted": {"orderId": 7}},
            interaction_id=interaction.interaction_id,
        )
    assert bad.value.pointer == "/accepted/orderId"
    with pytest.raises(NotFound):
        await c.awaits.complete(
            "other-tenant", response={}, interaction_id=interaction.interaction_id
        )
    with pytest.raises(InvalidInput):
        await c.awaits.complete("acme", response={}, resume_token="forged.token.value")

    token = c.awaits.admitter.token(interaction)
    done = await c.awaits.complete(
        "acme", response=accepted(parked_at["request"]["orderId"]), resume_token=token
    )
    assert done.interaction.interaction_id == interaction.interaction_id


async def test_the_completion_queue_resumes_and_deletes_each_message(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    completion = AwaitCompletion(
        tenant_id="acme",
        interaction_id=interaction.interaction_id,
        resume_token=c.awaits.admitter.token(interaction),
        response_payload=Payload(
            payload_type_id="x", payload=json.dumps(accepted(parked_at["request"]["orderId"]))
        ),
    )
    for body in (completion.to_json(), completion.to_json(), "not an envelope"):
        await c.await_completions.send(Outgoing(body))
    for message in await c.await_completions.receive(wait_s=0):
        await c.completions.handle(message)
    # Both copies were durable (one recorded, one duplicate) and deleted; the bad one stays.
    assert len(c.await_completions.messages) == 1
    await drive(c)
    assert (await result(c, execution_id))["outcome"] == "APPROVED"


@pytest.mark.parametrize("reference", ["interactionId", "correlationId"])
async def test_a_tpf_providers_completion_is_read_as_tpf_sends_it(
    c: InMemoryCoordinator, reference: str
) -> None:
    """TPF's ``SqsAwaitCompletionEnvelope``: no kind, the answer a plain object, blank strings
    for what is absent; its reference provider keys its answer by the interaction id."""
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    named = {
        "interactionId": interaction.interaction_id,
        "correlationId": interaction.correlation_id,
    }[reference]
    body = {
        "tenantId": "acme",
        reference: named,
        "resumeToken": c.awaits.admitter.token(interaction),
        "idempotencyKey": interaction.interaction_id,
        "responsePayload": accepted(parked_at["request"]["orderId"]),
        "actor": "csv-payments-sqs-mock-provider",
    }
    await c.await_completions.send(Outgoing(json.dumps(body)))
    no_reference = {k: v for k, v in body.items() if k != reference}
    await c.await_completions.send(Outgoing(json.dumps(no_reference)))
    for message in await c.await_completions.receive(wait_s=0):
        await c.completions.handle(message)
    assert len(c.await_completions.messages) == 1  # only the one naming no interaction stays
    await drive(c)
    assert (await result(c, execution_id))["outcome"] == "APPROVED"


@pytest.mark.parametrize("auth", ["enforce", "warn"])
async def test_a_provider_completion_must_echo_its_resume_token(
    auth: Literal["enforce", "warn"],
) -> None:
    settings = Settings(
        profile="test", due_shards=2, submit_without_worker=True, provider_auth=auth
    )
    c = InMemoryCoordinator.create(settings)
    await c.register(restaurant_approval)
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    answer = accepted(parked_at["request"]["orderId"])
    for token in (None, c.awaits.admitter.token(interaction).replace(".", ".x", 1)):
        body = {
            "tenantId": "acme",
            "interactionId": interaction.interaction_id,
            "responsePayload": answer,
            **({"resumeToken": token} if token else {}),
        }
        await c.await_completions.send(Outgoing(json.dumps(body)))
    for message in await c.await_completions.receive(wait_s=0):
        await c.completions.handle(message)
    assert not c.await_completions.messages  # both settled: neither can ever be valid
    await drive(c)
    status = (await c.service.status("acme", execution_id)).status
    # A forged token is refused in both modes; a missing one only where it is enforced.
    assert status is (Status.WAITING_EXTERNAL if auth == "enforce" else Status.SUCCEEDED)


@pytest.mark.parametrize(
    ("sign_with", "recorded"),
    [
        (None, False),  # unsigned, though it echoes its resume token
        ("some-other-providers-secret", False),
        ("payments-provider-secret", True),
    ],
)
async def test_with_provider_keys_a_completion_must_also_be_signed_by_its_provider(
    monkeypatch: pytest.MonkeyPatch, sign_with: str | None, recorded: bool
) -> None:
    monkeypatch.setenv("PAYMENTS_PROVIDER_KEY", "payments-provider-secret")
    settings = Settings(
        profile="test",
        due_shards=2,
        submit_without_worker=True,
        provider_keys={"payments": "env:PAYMENTS_PROVIDER_KEY"},
    )
    c = InMemoryCoordinator.create(settings)
    await c.register(restaurant_approval)
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    completion = AwaitCompletion(
        tenant_id="acme",
        interaction_id=interaction.interaction_id,
        resume_token=c.awaits.admitter.token(interaction),
        response_payload=Payload(
            payload_type_id="Decision",
            payload=json.dumps(accepted(parked_at["request"]["orderId"])),
        ),
    )
    if sign_with is not None:
        signer = Signer(SigningKey(sign_with.encode()))
        completion = signer.sign(
            completion, channel=PROVIDER_CHANNEL, now_ms=now_ms(), ttl_ms=60_000
        )
    await c.await_completions.send(Outgoing(completion.to_json()))
    for message in await c.await_completions.receive(wait_s=0):
        await c.completions.handle(message)
    assert not c.await_completions.messages  # settled either way: refused for good, or recorded
    await drive(c)
    status = (await c.service.status("acme", execution_id)).status
    assert status is (Status.SUCCEEDED if recorded else Status.WAITING_EXTERNAL)
    if recorded:
        stored = await c.await_table.get_interaction("acme", interaction.unit_id, 0)
        assert stored is not None and stored.actor == "payments"  # named by its key


async def test_a_transport_plugs_in_without_touching_the_coordinator() -> None:
    from datetime import timedelta

    from pydantic import BaseModel

    class Ask(BaseModel):
        n: int

    class Answer(BaseModel):
        ok: bool

    paged = Pipeline("org.tests.paged", input=Ask)

    @paged.await_(response=Answer, transport="pager", timeout=timedelta(minutes=1))
    def page(ask: Ask) -> Ask:
        return ask

    class Pager:
        name = "pager"
        sent: list[str] = []

        async def publish(
            self, unit: AwaitUnit, interactions: list[Interaction], tokens: dict[str, str]
        ) -> None:
            self.sent.extend(tokens[i.interaction_id] for i in interactions)

    c = InMemoryCoordinator.create()
    c.awaits.transports.register(Pager())
    await c.register(paged)
    outcome = await c.service.submit(
        tenant_id="acme", pipeline_id=paged.id, value={"n": 1}, idempotency_key="p", now_ms=1
    )
    await drive(c, paged)
    [token] = Pager.sent
    await c.awaits.complete("acme", response={"ok": True}, resume_token=token)
    record = await c.service.status("acme", outcome.record.execution_id)
    # The await was the last step: its answer is the result.
    assert record.status is Status.SUCCEEDED
    assert (await result(c, record.execution_id))["response"] == {"ok": True}


async def test_one_poisoned_answer_does_not_fail_its_round(c: InMemoryCoordinator) -> None:
    """A round of two answers for two executions; one carries a string no encoder accepts."""
    first, first_at = await parked(c, key="poisoned")
    second, second_at = await parked(c, key="fine")
    poison = accepted(first_at["request"]["orderId"])
    poison["accepted"]["note"] = "\ud800"  # a lone surrogate: valid JSON escaped, not UTF-8
    bodies = [
        AwaitCompletion(
            tenant_id="acme",
            interaction_id=at["interaction"].interaction_id,
            resume_token=c.awaits.admitter.token(at["interaction"]),
            response_payload=Payload(payload_type_id="x", payload=json.dumps(answer)),
        ).to_json()
        for at, answer in (
            (first_at, poison),
            (second_at, accepted(second_at["request"]["orderId"])),
        )
    ]
    for body in bodies:
        await c.await_completions.send(Outgoing(body))
    await c.completions.handle_many(await c.await_completions.receive(wait_s=0))
    await drive(c)
    assert (await result(c, second))["outcome"] == "APPROVED"
    assert (await c.service.status("acme", first)).status is Status.WAITING_EXTERNAL
    assert len(c.await_completions.messages) == 1, "the poisoned answer waits for the DLQ"


async def test_the_inbox_filters_find_one_waiting_behind_a_thousand_others(
    c: InMemoryCoordinator,
) -> None:
    unit = AwaitUnit(
        tenant_id="acme",
        unit_id="u-busy",
        execution_id="e-busy",
        step_id=AWAIT_STEP,
        step_index=2,
        resume_step=3,
        transport="interaction-api",
        itemized=True,
        total=1_201,
        deadline_ms=now_ms() + 60_000,
        created_at_ms=1,
    )
    waiting = [
        Interaction(
            tenant_id="acme",
            unit_id=unit.unit_id,
            item_index=n,
            execution_id=unit.execution_id,
            step_id=AWAIT_STEP,
            step_index=2,
            correlation_id=f"c-{n}",
            idempotency_key=f"k-{n}",
            request=json.dumps({"assignee": "ana" if n == 1_200 else "bob", "group": f"g{n}"}),
            deadline_ms=unit.deadline_ms,
            created_at_ms=1 + n,
        )
        for n in range(1_201)
    ]
    await c.await_table.create(unit, waiting)
    [found] = await c.awaits.pending("acme", assignee="ana", limit=5)
    assert found.item_index == 1_200
    [found] = await c.awaits.pending("acme", group="g1200", limit=5)
    assert found.item_index == 1_200
