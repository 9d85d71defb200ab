"""The awaits table contract on the in-memory fake, moto's server and DynamoDB Local: batched
counting that skips what is no longer pending, admission against the tenant's counter, closing."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from coordinator.awaits import AwaitTable, DynamoAwaitTable, InMemoryAwaitTable
from coordinator.awaits.model import (
    MAX_ASSIGNMENT,
    AwaitUnit,
    Carried,
    Claim,
    Inbox,
    Interaction,
    InteractionStatus,
    UnitStatus,
    carried_unit,
    interaction_to_item,
)
from tests.substrates import TestStack
from tpf.accounting import LEDGER
from tpf.dynamodb import serialize
from tpf.errors import StaleRecord
from tpf.substrate import open_clients

TENANT = "acme"


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def table(request: pytest.FixtureRequest) -> AsyncIterator[AwaitTable]:
    if request.param == "memory":
        yield InMemoryAwaitTable(shards=2)
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        yield DynamoAwaitTable(aws.dynamodb, stack.settings.resource("awaits"), shards=2)


def unit(unit_id: str, total: int) -> AwaitUnit:
    return AwaitUnit(
        tenant_id=TENANT,
        unit_id=unit_id,
        execution_id=f"e-{unit_id}",
        step_id="ask",
        step_index=2,
        resume_step=3,
        transport="sqs",
        itemized=True,
        total=total,
        deadline_ms=2_000_000_000_000,
        created_at_ms=1,
    )


def interactions(of: AwaitUnit) -> list[Interaction]:
    return [
        Interaction(
            tenant_id=TENANT,
            unit_id=of.unit_id,
            item_index=n,
            execution_id=of.execution_id,
            step_id="ask",
            step_index=2,
            correlation_id=f"c-{of.unit_id}-{n}",
            idempotency_key=f"k{n}",
            request=f'{{"n":{n}}}',
            deadline_ms=of.deadline_ms,
            created_at_ms=1,
            inbox=False,
        )
        for n in range(of.total)
    ]


def answered(i: Interaction) -> Interaction:
    return i.completed(response='{"ok":true}', digest="d", key=None, actor="t", now_ms=2)


async def test_a_batch_counts_each_interaction_once_and_skips_the_settled(
    table: AwaitTable,
) -> None:
    u = unit("u-count", 250)
    items = interactions(u)
    assert await table.create(u, items)
    assert not await table.create(u, items)

    first = await table.record([answered(i) for i in items[:10]])
    assert len(first) == 10
    # Some again, among new ones: only the new ones count, in one call (more than 100 actions).
    again = await table.record([answered(i) for i in items[5:200]])
    assert [i.item_index for i in again] == list(range(10, 200))
    stored = await table.get_unit(TENANT, u.unit_id)
    assert stored is not None and stored.done == 200
    fetched = await table.get_interactions([(TENANT, u.unit_id, n) for n in (0, 199, 200)])
    assert fetched[(TENANT, u.unit_id, 199)].status is InteractionStatus.COMPLETED
    assert fetched[(TENANT, u.unit_id, 200)].status is InteractionStatus.PENDING
    assert [
        i.item_index for i in await table.interactions(TENANT, u.unit_id, start=198, stop=202)
    ] == [
        198,
        199,
        200,
        201,
    ]
    # Provider interactions stay out of the human inbox.
    assert await table.pending(TENANT, limit=10, where=Inbox(not_before_ms=0)) == []

    await table.close_unit(TENANT, u.unit_id, UnitStatus.TIMED_OUT)
    assert await table.record([answered(items[249])]) == []


async def test_admission_reserves_against_the_tenant_and_closing_hands_it_back(
    table: AwaitTable,
) -> None:
    tenant_before = await table.tenant_in_flight(TENANT)
    limit = tenant_before + 8
    a, b = unit("u-adm-a", 10), unit("u-adm-b", 10)
    for u in (a, b):
        await table.create(u, interactions(u))

    moved_a = replace(a, published=5, accounted=5, wake_ms=10)
    assert await table.advance(a, moved_a, tenant_limit=limit)
    # b wants 5 but only 3 fit under the tenant's limit.
    assert not await table.advance(b, replace(b, published=5, accounted=5), tenant_limit=limit)
    assert await table.advance(b, replace(b, published=3, accounted=3), tenant_limit=limit)
    assert await table.tenant_in_flight(TENANT) == tenant_before + 8
    # A stale view of a unit is refused.
    with pytest.raises(StaleRecord):
        await table.advance(a, moved_a, tenant_limit=limit)

    stored = await table.get_unit(TENANT, a.unit_id)
    assert stored is not None and (stored.published, stored.accounted, stored.wake_ms) == (5, 5, 10)

    # Closing from a stale view (``a`` as created) reads the unit again and hands back what
    # it holds now; a view of a closed unit closes nothing.
    closed = await table.close_unit(TENANT, a.unit_id, UnitStatus.COMPLETED, seen=a)
    assert closed is not None and (closed.status, closed.published) == (UnitStatus.COMPLETED, 5)
    assert await table.close_unit(TENANT, a.unit_id, UnitStatus.TIMED_OUT) is None
    assert await table.close_unit(TENANT, a.unit_id, UnitStatus.TIMED_OUT, seen=stored) is None
    assert await table.tenant_in_flight(TENANT) == tenant_before + 3
    # From a current view, closing is one write and no read.
    current = await table.get_unit(TENANT, b.unit_id)
    assert current is not None
    reads = LEDGER.snapshot()["requests"].get("dynamodb", {}).get("GetItem", 0)
    assert await table.close_unit(TENANT, b.unit_id, UnitStatus.TIMED_OUT, seen=current)
    assert LEDGER.snapshot()["requests"].get("dynamodb", {}).get("GetItem", 0) == reads
    assert await table.tenant_in_flight(TENANT) == tenant_before


async def test_a_waking_unit_is_found_before_its_deadline(table: AwaitTable) -> None:
    u = unit("u-wake", 3)
    await table.create(u, interactions(u))
    assert await table.advance(
        u, replace(u, published=3, accounted=3, wake_ms=500), tenant_limit=10**6
    )
    found = [await table.overdue(shard, now_ms=600, limit=100) for shard in ("0", "1")]
    assert (TENANT, u.unit_id) in {unit for shard in found for unit in shard}
    early = [await table.overdue(shard, now_ms=400, limit=100) for shard in ("0", "1")]
    assert (TENANT, u.unit_id) not in {unit for shard in early for unit in shard}
    await table.close_unit(TENANT, u.unit_id, UnitStatus.COMPLETED)


async def test_a_unit_its_record_watches_is_in_no_sweeper_list(table: AwaitTable) -> None:
    u = replace(unit("u-watched", 1), itemized=False, transport="human", watched=True)
    u = replace(u, deadline_ms=1_000)
    assert await table.create(u, [replace(i, solo=True) for i in interactions(u)])
    stored = await table.get_unit(TENANT, u.unit_id)
    assert stored is not None and stored.watched
    found = [await table.overdue(shard, now_ms=10**13, limit=100) for shard in ("0", "1")]
    assert (TENANT, u.unit_id) not in {unit for shard in found for unit in shard}
    closed = await table.close_unit(TENANT, u.unit_id, UnitStatus.ABANDONED)
    assert closed is not None and closed.watched and closed.status is UnitStatus.ABANDONED


async def test_a_unit_of_one_is_carried_by_its_interaction_and_its_answer_completes_it(
    table: AwaitTable,
) -> None:
    def carrier(unit_id: str) -> tuple[AwaitUnit, Interaction]:
        u = replace(unit(unit_id, 1), itemized=False, transport="human", watched=True)
        u = replace(u, carried=True, published=1)
        [only] = interactions(u)
        carries = Carried(resume_step=3, transport="human", response_type="t.Answer")
        return u, replace(only, solo=True, inbox=True, carries=carries)

    answered_unit, only = carrier(uuid.uuid4().hex)
    assert await table.get_unit(TENANT, answered_unit.unit_id) is None
    assert await table.create(answered_unit, [only])
    assert not await table.create(answered_unit, [only])  # a second opener writes nothing
    opened = await table.get_unit(TENANT, answered_unit.unit_id)
    assert opened == carried_unit(only) and opened is not None
    assert (opened.status, opened.carried, opened.response_type) == (
        UnitStatus.OPEN,
        True,
        "t.Answer",
    )
    assert "un" in interaction_to_item(only) and "pp" not in interaction_to_item(only)["un"]
    listed = await table.pending(TENANT, limit=1000, where=Inbox(not_before_ms=0))
    assert [i.carries for i in listed if i.unit_id == answered_unit.unit_id] == [only.carries]

    # Its answer completes it: nothing to close, so closing writes nothing and says so.
    assert await table.record([answered(only)]) == [answered(only)]
    done = await table.get_unit(TENANT, answered_unit.unit_id)
    assert done is not None and (done.status, done.done) == (UnitStatus.COMPLETED, 1)
    assert await table.close_unit(TENANT, answered_unit.unit_id, UnitStatus.COMPLETED) is None
    assert await table.close_unit(TENANT, answered_unit.unit_id, UnitStatus.ABANDONED) is None

    # Unanswered, it is closed by taking its interaction out of the inbox.
    waiting, other = carrier(uuid.uuid4().hex)
    assert await table.create(waiting, [other])
    closed = await table.close_unit(TENANT, waiting.unit_id, UnitStatus.ABANDONED, seen=waiting)
    assert closed is not None and closed.status is UnitStatus.ABANDONED
    now = await table.get_unit(TENANT, waiting.unit_id)
    assert now is not None and now.status is UnitStatus.ABANDONED
    stored = await table.get_interaction(TENANT, waiting.unit_id, 0)
    assert stored is not None and stored.status is InteractionStatus.TIMED_OUT
    assert await table.record([answered(other)]) == []  # too late
    listed = await table.pending(TENANT, limit=1000, where=Inbox(not_before_ms=0))
    assert waiting.unit_id not in {i.unit_id for i in listed}


async def test_an_inbox_correlation_id_is_its_interaction_id_and_needs_no_index(
    table: AwaitTable, request: pytest.FixtureRequest
) -> None:
    u = replace(unit(uuid.uuid4().hex, 2), itemized=False, transport="human")
    derived, hashed = interactions(u)  # not listed in the inbox, which other tests read
    derived = replace(derived, correlation_id=derived.interaction_id)
    assert await table.create(u, [derived, hashed])
    stored = await table.interactions(TENANT, u.unit_id)
    assert [i.correlation_id for i in stored] == [derived.interaction_id, hashed.correlation_id]
    # The derived one is not written to the ``correlation`` index; the other one is found there.
    assert "cid" not in interaction_to_item(derived) and "cid" in interaction_to_item(hashed)
    assert await table.by_correlation(hashed.correlation_id) == (TENANT, u.unit_id, 1)
    if request.node.callspec.params["table"] != "memory":
        assert await table.by_correlation(derived.interaction_id) is None


async def test_a_solo_answer_is_one_conditional_write_that_the_unit_does_not_count(
    table: AwaitTable,
) -> None:
    u = replace(unit("u-solo", 1), itemized=False, transport="human")
    [only] = [replace(i, solo=True, inbox=True) for i in interactions(u)]
    assert await table.create(u, [only])
    assert [i.solo for i in await table.interactions(TENANT, u.unit_id)] == [True]
    before = LEDGER.snapshot()["requests"].get("dynamodb", {}).get("TransactWriteItems", 0)

    assert await table.record([answered(only)]) == [answered(only)]
    assert await table.record([answered(only)]) == []  # a second answer loses the condition
    after = LEDGER.snapshot()["requests"].get("dynamodb", {}).get("TransactWriteItems", 0)
    assert after == before  # no transaction
    stored = await table.get_interaction(TENANT, u.unit_id, 0)
    assert stored is not None and stored.status is InteractionStatus.COMPLETED and stored.solo
    opened = await table.get_unit(TENANT, u.unit_id)
    assert opened is not None and (opened.done, opened.status) == (0, UnitStatus.OPEN)
    assert await table.pending(TENANT, limit=10, where=Inbox(not_before_ms=0)) == []
    # Closed as completed, it says its one interaction was answered.
    assert await table.close_unit(TENANT, u.unit_id, UnitStatus.COMPLETED) is not None
    closed = await table.get_unit(TENANT, u.unit_id)
    assert closed is not None and (closed.done, closed.status) == (1, UnitStatus.COMPLETED)


async def test_counting_a_large_batch_costs_a_few_requests(request: pytest.FixtureRequest) -> None:
    stack: TestStack = request.getfixturevalue("localstack_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        table = DynamoAwaitTable(aws.dynamodb, stack.settings.resource("awaits"), shards=2)
        u = unit("u-cost", 500)
        await table.create(u, interactions(u))
        before = LEDGER.snapshot()["requests"].get("dynamodb", {}).get("TransactWriteItems", 0)
        assert len(await table.record([answered(i) for i in interactions(u)])) == 500
        after = LEDGER.snapshot()["requests"]["dynamodb"]["TransactWriteItems"]
        assert after - before == 6  # ceil(500 / 99)


async def test_a_second_opener_never_turns_an_answered_interaction_back_to_pending(
    table: AwaitTable,
) -> None:
    """Two replicas open the same unit; the second read "no unit" before the first wrote it."""
    u = unit("u-twice", 3)
    items = interactions(u)
    assert await table.create(u, items)
    answered = replace(items[1], status=InteractionStatus.COMPLETED, response='{"ok":true}')
    assert await table.record([answered]) == [answered]

    late = copy.copy(table)
    late.get_unit = _never_found  # type: ignore[method-assign]
    assert not await late.create(u, interactions(u))

    again = await table.get_interaction(TENANT, u.unit_id, 1)
    assert again is not None and again.status is InteractionStatus.COMPLETED
    opened = await table.get_unit(TENANT, u.unit_id)
    assert opened is not None and opened.done == 1


async def _never_found(tenant_id: str, unit_id: str) -> AwaitUnit | None:
    return None


def claim(execution_id: str, *, at: int, until: int) -> Claim:
    return Claim(
        tenant_id=TENANT,
        step_id="ask",
        key="acme:p-1",
        execution_id=execution_id,
        unit_id=f"u-{execution_id}",
        item_index=3,
        claimed_at_ms=at,
        until_ms=until,
    )


async def test_a_key_is_owned_by_its_first_sender_until_its_period_ends(table: AwaitTable) -> None:
    first = claim("e-first", at=1_000, until=5_000)
    assert await table.claim(first, now_ms=1_000) is None
    assert await table.claim(replace(first, unit_id="u-redriven"), now_ms=2_000) is None
    owner = await table.claim(claim("e-later", at=3_000, until=9_000), now_ms=3_000)
    assert owner is not None
    assert (owner.execution_id, owner.unit_id, owner.item_index) == ("e-first", "u-redriven", 3)
    # Once the period is over (even before TTL deletes the item) the key is free again.
    assert await table.claim(claim("e-later", at=6_000, until=9_000), now_ms=6_000) is None
    owner = await table.claim(claim("e-first", at=7_000, until=11_000), now_ms=7_000)
    assert owner is not None and owner.execution_id == "e-later"


async def test_an_interaction_answered_as_a_duplicate_keeps_its_owner(table: AwaitTable) -> None:
    of = unit("u-dup", 1)
    await table.create(of, interactions(of))
    (pending,) = interactions(of)
    duplicate = replace(answered(pending), response="null", duplicate_of='{"executionId":"e-1"}')
    assert await table.record([duplicate])
    stored = await table.get_interaction(TENANT, "u-dup", 0)
    assert stored is not None and stored.duplicate_of == '{"executionId":"e-1"}'
    assert stored.status is InteractionStatus.COMPLETED


def assigned(of: AwaitUnit, names: list[tuple[str | None, str | None, str]]) -> list[Interaction]:
    """Inbox interactions of ``of`` whose requests name (assignee, group) at a step."""
    waiting = []
    for n, (assignee, group, step) in enumerate(names):
        request = {"n": n, "assignee": assignee, "group": group}
        waiting.append(
            replace(
                interactions(of)[0],
                item_index=n,
                correlation_id=f"c-{of.unit_id}-{n}",
                step_id=step,
                request=json.dumps({k: v for k, v in request.items() if v is not None}),
                created_at_ms=100 + n,
                inbox=True,
            )
        )
    return waiting


async def test_the_inbox_is_filtered_by_assignee_group_and_step_in_the_store(
    table: AwaitTable,
) -> None:
    of = replace(unit("u-inbox", 8), transport="interaction-api")
    names = [
        ("ana", "kitchen", "approve"),
        ("bob", "kitchen", "approve"),
        (None, "kitchen", "approve"),
        ("ana", None, "review"),
        ("ana", "bar", "approve"),
        (None, None, "approve"),
        ("x" * (MAX_ASSIGNMENT + 1), "kitchen", "approve"),  # too long to index: listed only
        ("ana", "kitchen", "approve"),
    ]
    await table.create(of, assigned(of, names))

    async def listed(**where: str) -> list[int]:
        found = await table.pending(TENANT, limit=10, where=Inbox(not_before_ms=0, **where))
        return [i.item_index for i in found]

    assert await listed() == list(range(8))
    assert await listed(assignee="ana") == [0, 3, 4, 7]
    assert await listed(group="kitchen") == [0, 1, 2, 6, 7]
    assert await listed(assignee="ana", group="kitchen") == [0, 7]
    assert await listed(assignee="ana", step_id="approve") == [0, 4, 7]
    assert await listed(group="kitchen", step_id="review") == []
    assert await listed(step_id="review") == [3]
    assert await listed(assignee="nobody") == []
    # Answered, an interaction leaves every listing; past its deadline, too.
    await table.record([answered(assigned(of, names)[0])])
    assert await listed(assignee="ana") == [3, 4, 7]
    gone = await table.pending(
        TENANT, limit=10, where=Inbox(not_before_ms=of.deadline_ms + 1, assignee="ana")
    )
    assert gone == []


async def test_reindex_gives_earlier_waiting_interactions_their_filter_keys(
    table: AwaitTable,
) -> None:
    # Names of its own: the stack is shared with the other tests of this module.
    of = replace(unit("u-earlier", 2), transport="interaction-api")
    waiting = assigned(of, [("cleo", "pantry", "approve"), (None, None, "approve")])
    await table.create(of, waiting)
    if isinstance(table, DynamoAwaitTable):  # as a main before 2026-12 stored them
        for i in waiting:
            item = {k: v for k, v in interaction_to_item(i).items() if k not in ("pa", "pg")}
            await table.client.put_item(TableName=table.table_name, Item=serialize(item))
        unseen = await table.pending(TENANT, limit=5, where=Inbox(0, assignee="cleo"))
        assert unseen == []
    assert await table.reindex(waiting) == (1 if isinstance(table, DynamoAwaitTable) else 0)
    [found] = await table.pending(TENANT, limit=5, where=Inbox(0, assignee="cleo"))
    assert found.item_index == 0
    [found] = await table.pending(TENANT, limit=5, where=Inbox(0, group="pantry"))
    assert found.item_index == 0
