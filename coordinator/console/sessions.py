"""Console sessions: the browser holds a random id, the server holds what it stands for.

The bearer token a person signs in with never goes back to the browser: the cookie carries a
random session id (HttpOnly so scripts cannot read it, SameSite=Strict so other sites cannot
send it, Secure when the request came over TLS), and the session keeps the token's grant, the
person's name and a CSRF token for the forms. Sessions end after a fixed time.

Sessions are kept in a ``SessionTable``: the registry table when the coordinator runs on
DynamoDB, so every replica behind a load balancer knows every session. The table's key is a
hash of the session id, so reading the table gives no one a cookie that works.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from coordinator.access import Grant

COOKIE = "tpf_console"


@dataclass(frozen=True)
class Session:
    session_id: str
    grant: Grant
    user: str
    csrf: str
    expires_at_s: int
    """Epoch seconds; past it the session is gone on every replica."""

    @property
    def actor(self) -> str:
        """Who the history entries of this person's actions name."""
        return f"{self.user} (console)"

    def csrf_matches(self, presented: str) -> bool:
        # compare_digest: the time taken says nothing about how much of the token was right.
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


@dataclass(frozen=True)
class StoredSession:
    """A session as its table keeps it: everything but the id the browser holds."""

    grant: Grant
    user: str
    csrf: str
    expires_at_s: int


class SessionTable(Protocol):
    """Port: sessions by the hash of their id; expired ones may linger until read."""

    async def put(self, key: str, session: StoredSession) -> None: ...

    async def get(self, key: str) -> StoredSession | None: ...

    async def delete(self, key: str) -> None: ...


class SessionStore:
    def __init__(
        self, table: SessionTable, *, ttl_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.table, self.ttl_s, self.clock = table, ttl_s, clock

    async def start(self, grant: Grant, user: str) -> Session:
        session_id = secrets.token_urlsafe(32)
        stored = StoredSession(
            grant=grant,
            user=user,
            csrf=secrets.token_urlsafe(32),
            expires_at_s=int(self.clock() + self.ttl_s),
        )
        await self.table.put(key_of(session_id), stored)
        return Session(session_id, stored.grant, stored.user, stored.csrf, stored.expires_at_s)

    async def find(self, session_id: str | None) -> Session | None:
        # Random ids are 43 characters; anything far longer is not ours and is not looked up.
        if not session_id or len(session_id) > 100:
            return None
        stored = await self.table.get(key_of(session_id))
        # Checked here as well: a table's TTL deletes expired items late.
        if stored is None or stored.expires_at_s <= self.clock():
            return None
        return Session(session_id, stored.grant, stored.user, stored.csrf, stored.expires_at_s)

    async def end(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 100:
            await self.table.delete(key_of(session_id))


def key_of(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
