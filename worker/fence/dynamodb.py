"""The fence on DynamoDB: one strongly consistent GetItem of three attributes (1 RRU)."""

from __future__ import annotations

import logging
from typing import Any

from tpf.dynamodb import Items
from tpf.records import partition_key
from tpf.wire import TransitionCommand
from worker.fence.port import live

log = logging.getLogger("tpf.worker")


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
