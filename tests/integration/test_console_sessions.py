"""Console sessions in the registry table on moto's server and DynamoDB Local: what one replica
stores, another reads, and the table never holds a session id a browser could present."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from coordinator.access import Grant
from coordinator.console.session_tables import DynamoSessionTable, MemorySessionTable
from coordinator.console.sessions import SessionStore, SessionTable
from tests.substrates import TestStack
from tpf.substrate import open_clients

pytestmark = pytest.mark.timeout(60)

ADMIN = Grant(control=False, admin=True, tenants=None)
SCOPED = Grant(control=True, admin=True, tenants=frozenset({"acme", "globex"}))


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def table(request: pytest.FixtureRequest) -> AsyncIterator[SessionTable]:
    if request.param == "memory":
        yield MemorySessionTable()
        return
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        yield DynamoSessionTable(aws.dynamodb, stack.settings.resource("registry"))


@pytest.mark.parametrize("grant", [ADMIN, SCOPED], ids=["admin", "scoped"])
async def test_a_session_started_by_one_replica_is_found_by_another(
    table: SessionTable, grant: Grant
) -> None:
    one, other = SessionStore(table, ttl_s=600), SessionStore(table, ttl_s=600)
    session = await one.start(grant, "ada")
    assert await other.find(session.session_id) == session
    await other.end(session.session_id)
    assert await one.find(session.session_id) is None


async def test_an_expired_session_is_gone_before_the_table_deletes_it(table: SessionTable) -> None:
    now = [1_800_000_000.0]
    store = SessionStore(table, ttl_s=60, clock=lambda: now[0])
    session = await store.start(ADMIN, "ada")
    now[0] += 60
    assert await store.find(session.session_id) is None


async def test_unknown_and_oversized_ids_find_nothing(table: SessionTable) -> None:
    store = SessionStore(table, ttl_s=600)
    assert await store.find(secrets.token_urlsafe(32)) is None
    assert await store.find("x" * 10_000) is None
    await store.end("x" * 10_000)


async def test_the_table_keys_sessions_by_a_hash_of_their_id(embedded_stack: TestStack) -> None:
    async with open_clients(embedded_stack.settings, endpoints=embedded_stack.endpoints) as aws:
        name = embedded_stack.settings.resource("registry")
        session = await SessionStore(DynamoSessionTable(aws.dynamodb, name), ttl_s=600).start(
            ADMIN, "ada"
        )
        items = (
            await aws.dynamodb.scan(
                TableName=name,
                FilterExpression="begins_with(pk, :p)",
                ExpressionAttributeValues={":p": {"S": "console-session#"}},
            )
        )["Items"]
    assert items
    assert all(session.session_id not in str(item) for item in items)
