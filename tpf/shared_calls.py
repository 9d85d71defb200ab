"""Concurrent callers that want the same thing share one call for it.

A burst of requests meeting a cold cache (the first submits of a release, a cache entry that
just expired) would otherwise each make the same read: one request per caller where one does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedCalls(Generic[K, V]):
    """``call(key, load)`` runs ``load`` unless a call for ``key`` is running: then it waits for
    that one's outcome (value or exception). Nothing is kept once the call ends: caching the
    value is the caller's."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def call(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # A caller that is cancelled leaves the call running for the others.
        return await asyncio.shield(running)
