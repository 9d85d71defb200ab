"""Where console sessions are kept: in memory for one process, or in the registry table."""

from __future__ import annotations

import json
from typing import Any

from coordinator.access import Grant
from coordinator.console.sessions import StoredSession

MAX_SESSIONS = 10_000
"""In memory, beyond this the oldest sign-in is dropped: sign-ins cannot grow memory unbounded."""
SESSION_PREFIX = "console-session#"


class MemorySessionTable:
    def __init__(self) -> None:
        self._sessions: dict[str, StoredSession] = {}

    async def put(self, key: str, session: StoredSession) -> None:
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[key] = session

    async def get(self, key: str) -> StoredSession | None:
        return self._sessions.get(key)

    async def delete(self, key: str) -> None:
        self._sessions.pop(key, None)


class DynamoSessionTable:
    """One item per session in the registry table, removed by the table's TTL once expired."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client, self.table_name = client, table_name

    async def put(self, key: str, session: StoredSession) -> None:
        grant = session.grant
        scope = None if grant.tenants is None else sorted(grant.tenants)
        await self.client.put_item(
            TableName=self.table_name,
            Item={
                **_key(key),
                "u": {"S": session.user},
                "c": {"S": session.csrf},
                "g": {"S": json.dumps([grant.control, grant.admin, scope])},
                "ttl": {"N": str(session.expires_at_s)},
            },
            ReturnConsumedCapacity="TOTAL",
        )

    async def get(self, key: str) -> StoredSession | None:
        response = await self.client.get_item(
            TableName=self.table_name,
            Key=_key(key),
            ConsistentRead=True,  # a sign-in is used by the very next request, maybe elsewhere
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        if item is None:
            return None
        control, admin, scope = json.loads(item["g"]["S"])
        return StoredSession(
            grant=Grant(
                control=bool(control),
                admin=bool(admin),
                tenants=None if scope is None else frozenset(scope),
            ),
            user=item["u"]["S"],
            csrf=item["c"]["S"],
            expires_at_s=int(item["ttl"]["N"]),
        )

    async def delete(self, key: str) -> None:
        await self.client.delete_item(
            TableName=self.table_name, Key=_key(key), ReturnConsumedCapacity="TOTAL"
        )


def _key(key: str) -> dict[str, Any]:
    return {"pk": {"S": SESSION_PREFIX + key}, "sk": {"S": "S"}}
