"""The worker's half of fencing: refuse, unrun, a command whose transition has moved on.

SQS commands carry an expiry, not a nonce (REFERENCE section 4): a redelivery and a 900 s
delayed retry must pass. What tells a replay from a redelivery is the execution record itself:
a command may run only while its record is still in flight under the command's transition key
and version. One strongly consistent read of three attributes (1 RRU) per command answers that,
so a replayed command is never executed — and the coordinator's conditional commit still fences
whatever slips between this read and the result.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from tpf.dynamodb import Items
from tpf.records import Status, partition_key
from tpf.wire import TransitionCommand

log = logging.getLogger("tpf.worker")

IN_FLIGHT = frozenset({Status.RUNNING.value, Status.WAIT_RETRY.value})


class TransitionFence(Protocol):
    async def is_live(self, command: TransitionCommand) -> bool:
        """Whether the command's transition is still the execution's current one."""


def live(item: dict[str, Any] | None, command: TransitionCommand) -> bool:
    """The rule, on an item's plain ``st``, ``tk`` and ``v`` values."""
    return (
        item is not None
        and item.get("st") in IN_FLIGHT
        and item.get("tk") == command.transition_key
        and int(item.get("v", -1)) == command.execution_version
    )


class DynamoTransitionFence:
    def __init__(self, client: Any, table_name: str) -> None:
        self.items = Items(client, table_name)

    async def is_live(self, command: TransitionCommand) -> bool:
        key = {"pk": partition_key(command.tenant_id, command.execution_id)}
        try:
            item = await self.items.get(key, attributes=("st", "tk", "v"))
        except Exception as exc:
            # Unknown is not stale: run it, and let the coordinator's commit fence the result.
            log.warning(
                "fence read failed: %s",
                exc,
                extra={"action": "fence-unread", "executionId": command.execution_id},
            )
            return True
        return live(item, command)
