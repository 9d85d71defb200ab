"""An inbox await of one interaction, carried by it: its correlation id is its id, its answer
is read back where it was recorded, and the read that finds it may lag."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from coordinator.awaits.memory import InMemoryAwaitTable
from coordinator.awaits.model import Interaction
from coordinator.awaits.port import Key
from coordinator.testing import InMemoryCoordinator
from examples.restaurant_approval import restaurant_approval
from tests.unit.drive import commands, failed
from tests.unit.test_awaits import accepted, drive, parked, result
from tpf.clock import now_ms
from tpf.errors import NotFound
from tpf.payloads import PayloadMissing, PayloadRef, PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend
from tpf.records import Status


@pytest.fixture
async def c() -> InMemoryCoordinator:
    coordinator = InMemoryCoordinator.create()
    await coordinator.register(restaurant_approval)
    return coordinator


async def test_an_inbox_correlation_id_is_the_interaction_id_and_must_name_it(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    interaction: Interaction = parked_at["interaction"]
    assert interaction.correlation_id == interaction.interaction_id
    # A correlation id names an interaction only when it is that interaction's own.
    other = replace(interaction, correlation_id="c-hashed-by-a-provider")
    await c.awaits.table.add_interactions([replace(other, item_index=1, unit_id="f" * 32)])
    with pytest.raises(NotFound):
        await c.awaits.complete(
            "acme",
            response=accepted(parked_at["request"]["orderId"]),
            correlation=interaction_id_of(other, item_index=1, unit_id="f" * 32),
        )
    await c.awaits.complete(
        "acme",
        response=accepted(parked_at["request"]["orderId"]),
        correlation=interaction.correlation_id,
    )
    await drive(c)
    assert (await result(c, execution_id))["outcome"] == "APPROVED"


def interaction_id_of(i: Interaction, **changes: Any) -> str:
    return replace(i, **changes).interaction_id


async def test_a_resumed_order_reads_its_answer_where_it_was_recorded(
    c: InMemoryCoordinator,
) -> None:
    """The answer is stored once, in its interaction: the resumed record points there, a
    command sent again reads it back, and a re-drive stores it on its own first."""
    execution_id, parked_at = await parked(c)
    order_id = parked_at["request"]["orderId"]
    stored_before = dict(c.payloads.backend.items)  # type: ignore[attr-defined]
    await c.awaits.complete(
        "acme", response=accepted(order_id), interaction_id=parked_at["interaction"].interaction_id
    )
    resumed = await c.service.status("acme", execution_id)
    assert resumed.continuation is not None and resumed.continuation.tier == "answers"
    assert c.payloads.backend.items == stored_before  # type: ignore[attr-defined]
    answer = {"request": parked_at["request"], "response": accepted(order_id)}

    for _ in range(3):  # every attempt the policy allows, the retries sent again
        [command] = await commands(c)
        assert command.input.payload is not None
        assert json.loads(command.input.payload) == answer
        await c.committer.commit(failed(command), now_ms=command.deadline_epoch_ms - 1)
    assert (await c.service.status("acme", execution_id)).status is Status.DLQ

    await c.operations.redrive("acme", execution_id, actor="ada", now_ms=now_ms())
    redriven = await c.service.status("acme", execution_id)
    assert redriven.continuation is not None and redriven.continuation.tier != "answers"
    stored = await c.payloads.get("acme", execution_id, redriven.continuation)
    assert json.loads(stored) == answer
    await drive(c)
    assert (await result(c, execution_id))["outcome"] == "APPROVED"


async def test_only_the_coordinator_reads_recorded_answers() -> None:
    worker_side = PayloadStore(InMemoryPayloadBackend())  # as a worker's: no answers reader
    with pytest.raises(PayloadMissing):
        await worker_side.get("acme", "e-1", PayloadRef.of_answers("u" * 32))
    assert PayloadRef.from_compact(PayloadRef.of_answers("u1").compact()).tier == "answers"


class Lagging(InMemoryAwaitTable):
    """An awaits table whose reads that may lag have seen nothing yet (just opened)."""

    async def get_interactions(
        self, keys: Sequence[Key], *, consistent: bool = True
    ) -> dict[Key, Interaction]:
        return await super().get_interactions(keys) if consistent else {}


async def test_an_answer_to_an_interaction_a_lagging_read_missed_is_recorded(
    c: InMemoryCoordinator,
) -> None:
    execution_id, parked_at = await parked(c)
    c.await_table.__class__ = Lagging
    done = await c.awaits.complete(
        "acme",
        response=accepted(parked_at["request"]["orderId"]),
        interaction_id=parked_at["interaction"].interaction_id,
    )
    assert not done.duplicate
    await drive(c)
    assert (await result(c, execution_id))["outcome"] == "APPROVED"
