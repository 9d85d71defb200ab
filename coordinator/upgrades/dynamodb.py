"""The upgrades run against the stack's DynamoDB tables."""

from __future__ import annotations

from coordinator.awaits import DynamoAwaitTable
from coordinator.store import ExecutionStore
from coordinator.store.dynamodb import DynamoExecutionTable
from coordinator.upgrades import UPGRADES
from coordinator.upgrades.ledger import Applied, UpgradeContext, upgrade_stack
from tpf.clock import now_ms
from tpf.registry.dynamodb import DynamoRegistryTable
from tpf.settings import Settings
from tpf.substrate import Endpoints, open_clients


async def upgrade_tables(
    settings: Settings, *, endpoints: Endpoints | None = None, fresh: bool
) -> list[Applied]:
    """Apply the upgrades the stack has not had (``fresh``: its tables were just created)."""
    async with open_clients(settings, endpoints=endpoints) as aws:
        executions = DynamoExecutionTable(
            aws.dynamodb, settings.resource("executions"), shards=settings.due_shards
        )
        context = UpgradeContext(
            # No history: an upgrade fills in what a record lacks, it changes no state.
            store=ExecutionStore(executions),
            awaits=DynamoAwaitTable(
                aws.dynamodb, settings.resource("awaits"), shards=settings.due_shards
            ),
            timings=settings.timings,
            now_ms=now_ms(),
        )
        ledger = DynamoRegistryTable(aws.dynamodb, settings.resource("registry"))
        return await upgrade_stack(UPGRADES, context, ledger, fresh=fresh)
