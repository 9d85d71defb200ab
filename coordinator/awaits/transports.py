"""How await requests reach the outside world. A transport is one small class; adding one
means registering it by name in ``Transports`` (a test adds its own under ``tests/``).

* ``interaction-api``: nothing to send — people find the interaction in the pending list and
  complete it over HTTP;
* ``sqs``: one signed-off ``AwaitRequest`` per interaction on the await-requests queue; the
  provider answers on the await-completions queue (or over HTTP).
"""

from __future__ import annotations

import json
from typing import Protocol

from coordinator.awaits.model import AwaitUnit, Interaction
from tpf.clock import now_ms
from tpf.errors import ConfigurationError
from tpf.queues import Outgoing, Queue
from tpf.wire import AwaitRequest


class Transport(Protocol):
    """Publishes requests. A transport may set ``admission = False`` when it has no receiver to
    flood (the human inbox); otherwise admission bounds how many of its requests are out. One
    that can tell how many requests wait unread may define ``async backlog() -> int``: requests
    are sent again after a stall only when nothing waits (the receiver is not merely behind)."""

    name: str

    async def publish(
        self, unit: AwaitUnit, interactions: list[Interaction], tokens: dict[str, str]
    ) -> None:
        """Make the requests known; ``tokens`` holds each interaction's resume token by id."""


class InteractionApi:
    name = "interaction-api"
    admission = False

    async def publish(
        self, unit: AwaitUnit, interactions: list[Interaction], tokens: dict[str, str]
    ) -> None:
        return None  # the pending list is the inbox


class SqsRequests:
    name = "sqs"

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def backlog(self) -> int:
        return await self.queue.backlog()

    async def publish(
        self, unit: AwaitUnit, interactions: list[Interaction], tokens: dict[str, str]
    ) -> None:
        now = now_ms()
        await self.queue.send_many(
            [
                Outgoing(
                    AwaitRequest(
                        tenant_id=i.tenant_id,
                        execution_id=i.execution_id,
                        unit_id=i.unit_id,
                        interaction_id=i.interaction_id,
                        correlation_id=i.correlation_id,
                        step_id=i.step_id,
                        step_index=i.step_index,
                        item_index=i.item_index if unit.itemized else None,
                        idempotency_key=i.idempotency_key,
                        deadline_epoch_ms=i.deadline_ms,
                        request_payload=json.loads(i.request),
                        resume_token=tokens.get(i.interaction_id),
                        input_type=unit.request_type,
                        output_type=unit.response_type,
                        transport_metadata={
                            "adapter": "sqs",
                            "requestQueue": self.queue.name,
                            "dispatchedAtEpochMs": now,
                        },
                    ).to_json()
                )
                for i in interactions
            ]
        )


class Transports:
    def __init__(self, *transports: Transport) -> None:
        self._by_name = {t.name: t for t in transports}

    def register(self, transport: Transport) -> None:
        self._by_name[transport.name] = transport

    def get(self, name: str) -> Transport:
        transport = self._by_name.get(name)
        if transport is None:
            raise ConfigurationError(
                f"no await transport {name!r}; known: {', '.join(sorted(self._by_name))}"
            )
        return transport
