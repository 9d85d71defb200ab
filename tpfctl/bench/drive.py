"""Driving executions through a running fleet: submit over HTTP, answer the inbox, follow.

Submits and answers go through the coordinator's HTTP API, as a client's would, so their cost
lands in the coordinator's ledger. Following progress reads the executions and history tables
from this process, with a ledger of its own: a benchmark's watching is not the framework's cost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from coordinator.history import Change, DynamoHistoryTable
from examples.restaurant_approval import AWAIT_STEP
from tpf.accounting import RequestLedger
from tpf.codec import encode_envelope
from tpf.dynamodb import deserialize, serialize
from tpf.errors import ConfigurationError
from tpf.records import ExecutionRecord, Status, from_item, partition_key
from tpf.substrate import AwsClients, open_clients
from tpfctl.stack import OwnedStack

PLAIN = "org.example.orders"
APPROVAL = "org.pipelineframework.restaurantapproval"
POLL_S = 0.1
BATCH_GET_LIMIT = 100


def plain_input(i: int) -> Any:
    return {"orderId": f"b-{i}", "amountCents": 1_000 + i, "customer": "Ada"}


def approval_input(i: int) -> Any:
    return {
        "requestId": str(uuid.UUID(int=i)),
        "customerName": "Ada",
        "restaurantName": "Chez Lovelace",
        "items": "soup",
        "totalAmount": 23.5,
        "currency": "EUR",
    }


INPUTS = {PLAIN: plain_input, APPROVAL: approval_input}


@dataclass(frozen=True)
class Load:
    """What to run: ``executions`` of ``pipeline`` for ``tenant``, at once or one at a time."""

    pipeline: str
    tenant: str
    executions: int
    one_at_a_time: bool = False
    concurrency: int = 16
    timeout_s: float = 300.0


@dataclass(frozen=True)
class Outcome:
    records: dict[str, ExecutionRecord]
    submitted_at: float
    """Epoch seconds when the first submit was sent."""
    inbox_lists: int
    inbox_answers: int

    @property
    def finished_at(self) -> float:
        """Epoch seconds of the last commit, from the records themselves."""
        return max(r.updated_at_ms for r in self.records.values()) / 1000

    @property
    def state_changes(self) -> int:
        return sum(r.version + 1 for r in self.records.values())

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records.values():
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        return counts


class Driver:
    def __init__(self, stack: OwnedStack, aws: AwsClients, api: httpx.AsyncClient) -> None:
        self.stack, self.aws, self.api = stack, aws, api
        self.table = stack.settings.resource("executions")
        self.history = DynamoHistoryTable(aws.dynamodb, stack.settings.resource("history"))

    async def run(self, load: Load) -> Outcome:
        driving = _Run(self, load)
        if load.one_at_a_time:
            for i in range(load.executions):
                await driving.follow([await driving.submit(i)])
        else:
            gate = asyncio.Semaphore(load.concurrency)

            async def submit(i: int) -> str:
                async with gate:
                    return await driving.submit(i)

            ids = await asyncio.gather(*(submit(i) for i in range(load.executions)))
            await driving.follow(list(ids))
        return Outcome(
            records=driving.records,
            submitted_at=driving.first_submit or time.time(),
            inbox_lists=driving.lists,
            inbox_answers=len(driving.answered),
        )

    async def histories(
        self, records: dict[str, ExecutionRecord], *, timeout_s: float = 30.0
    ) -> dict[str, list[Change]]:
        """Every execution's history, once all its entries (written off the commit path) landed."""
        found: dict[str, list[Change]] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [r for eid, r in records.items() if eid not in found]
            lists = await asyncio.gather(
                *(self.history.list(r.tenant_id, r.execution_id, limit=1000) for r in missing)
            )
            for record, changes in zip(missing, lists, strict=True):
                if len(changes) >= record.version + 1:
                    found[record.execution_id] = changes
            if len(found) == len(records):
                return found
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the history of {len(records) - len(found)} executions is incomplete "
                    f"after {timeout_s:.0f}s"
                )
            await asyncio.sleep(POLL_S)

    async def fetch(self, tenant: str, ids: list[str]) -> list[ExecutionRecord]:
        records = []
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            keys = [
                serialize({"pk": partition_key(tenant, eid)})
                for eid in ids[start : start + BATCH_GET_LIMIT]
            ]
            response = await self.aws.dynamodb.batch_get_item(
                RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
            )
            items = response.get("Responses", {}).get(self.table, [])
            records += [from_item(deserialize(item)) for item in items]
        return records


class _Run:
    """One load's bookkeeping: what was submitted, answered and seen."""

    def __init__(self, driver: Driver, load: Load) -> None:
        self.driver, self.load = driver, load
        self.records: dict[str, ExecutionRecord] = {}
        self.answered: set[str] = set()
        self.lists = 0
        self.first_submit: float | None = None
        self.prefix = f"/tpf/control-plane/tenants/{load.tenant}"

    async def submit(self, i: int) -> str:
        self.first_submit = self.first_submit or time.time()
        response = await self.driver.api.post(
            f"{self.prefix}/executions",
            json={
                "pipelineId": self.load.pipeline,
                "inputShape": "UNI",
                "inputPayload": encode_envelope("bench.Input", INPUTS[self.load.pipeline](i)),
                "idempotencyKey": uuid.uuid4().hex,
                "outputStreaming": False,
            },
        )
        response.raise_for_status()
        execution_id: str = response.json()["executionId"]
        return execution_id

    async def follow(self, ids: list[str]) -> None:
        """Until every execution is terminal, answering those parked in the inbox."""
        deadline = time.monotonic() + self.load.timeout_s
        open_ids = set(ids)
        while open_ids:
            for record in await self.driver.fetch(self.load.tenant, sorted(open_ids)):
                self.records[record.execution_id] = record
                if record.terminal:
                    open_ids.discard(record.execution_id)
            parked = {
                eid
                for eid in open_ids
                if self.records.get(eid) is not None
                and self.records[eid].status is Status.WAITING_EXTERNAL
                and eid not in self.answered
            }
            if parked:
                await self.answer(parked)
            if not open_ids:
                return
            if time.monotonic() > deadline:
                statuses = sorted(r.status.value for r in self.records.values())
                raise ConfigurationError(
                    f"{len(open_ids)} of {len(ids)} executions not finished within "
                    f"{self.load.timeout_s:.0f}s (statuses seen: {statuses[:20]})"
                )
            await asyncio.sleep(POLL_S)

    async def answer(self, parked: set[str]) -> None:
        """The auto-approver: list the inbox once, accept what is ours and waiting."""
        self.lists += 1
        response = await self.driver.api.get(
            f"{self.prefix}/interactions/pending", params={"stepId": AWAIT_STEP, "limit": 1000}
        )
        response.raise_for_status()
        gate = asyncio.Semaphore(self.load.concurrency)

        async def accept(interaction: dict[str, Any]) -> None:
            order_id = interaction["requestPayload"]["orderId"]
            decision = {"accepted": {"orderId": order_id, "decidedAt": "2026-01-01T00:00:00Z"}}
            async with gate:
                done = await self.driver.api.post(
                    f"{self.prefix}/interactions/complete",
                    json={
                        "interactionId": interaction["interactionId"],
                        "idempotencyKey": f"bench-{interaction['interactionId']}",
                        "responsePayload": encode_envelope("Decision", decision),
                        "actor": "bench-approver",
                    },
                )
            done.raise_for_status()
            self.answered.add(interaction["executionId"])

        await asyncio.gather(*(accept(i) for i in response.json() if i["executionId"] in parked))


@asynccontextmanager
async def driving(stack: OwnedStack, *, concurrency: int = 16) -> AsyncIterator[Driver]:
    async with (
        open_clients(stack.settings, endpoints=stack.endpoints, ledger=RequestLedger()) as aws,
        httpx.AsyncClient(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {stack.control_plane_token}"},
            timeout=60,
            limits=httpx.Limits(max_connections=concurrency),
        ) as api,
    ):
        yield Driver(stack, aws, api)
