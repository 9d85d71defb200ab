"""The worker's half of fencing: refuse, unrun, a command whose transition has moved on.

SQS commands carry an expiry, not a nonce (REFERENCE section 4): a redelivery and a 900 s
delayed retry must pass. What tells a replay from a redelivery is the execution record itself:
a command may run only while its record is still in flight under the command's transition key
and version. One strongly consistent read of three attributes (1 RRU) per command answers that,
so a replayed command is never executed — and the coordinator's conditional commit still fences
whatever slips between this read and the result.
"""

from __future__ import annotations

from typing import Any, Protocol

from tpf.records import Status
from tpf.wire import TransitionCommand

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
