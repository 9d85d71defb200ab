"""Console sessions: the browser holds a random id, the server holds what it stands for.

The bearer token a person signs in with never goes back to the browser: the cookie carries a
random session id (HttpOnly so scripts cannot read it, SameSite=Strict so other sites cannot
send it, Secure when the request came over TLS), and the session keeps the token's grant, the
person's name and a CSRF token for the forms. Sessions live in this replica's memory and end
after a fixed time: behind a load balancer, pin console users to a replica.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.access import Grant

COOKIE = "tpf_console"
MAX_SESSIONS = 10_000
"""Beyond this, the oldest sign-in is dropped: sign-ins cannot grow memory without bound."""


@dataclass(frozen=True)
class Session:
    session_id: str
    grant: Grant
    user: str
    csrf: str
    expires_at: float = field(compare=False)

    @property
    def actor(self) -> str:
        """Who the history entries of this person's actions name."""
        return f"{self.user} (console)"

    def csrf_matches(self, presented: str) -> bool:
        # compare_digest: the time taken says nothing about how much of the token was right.
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionStore:
    def __init__(self, *, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._sessions: dict[str, Session] = {}

    def start(self, grant: Grant, user: str) -> Session:
        self._drop_expired()
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        session = Session(
            session_id=secrets.token_urlsafe(32),
            grant=grant,
            user=user,
            csrf=secrets.token_urlsafe(32),
            expires_at=self.clock() + self.ttl_s,
        )
        self._sessions[session.session_id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _drop_expired(self) -> None:
        now = self.clock()
        for session_id in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[session_id]
