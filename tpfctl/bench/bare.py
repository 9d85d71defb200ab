"""The bare loop: one role's AWS requests per execution, issued with nothing else around them.

Run as ``python -m tpfctl.bench.bare PLAN.json`` by :mod:`tpfctl.bench.replay`, one process per
process of the measured fleet. It prepares (queue URLs, seed items, a queue filled with enough
messages that every receive finds some), prints ``ready``, waits for a line on stdin so every
process starts together, replays ``executions`` times the per-execution request rates of the
plan with ``concurrency`` lanes, and prints one JSON line: its wall interval, its CPU seconds
and the requests it made. Fractional rates are kept as credit, so N executions issue
N x rate requests of each operation.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tpf.accounting import RequestLedger
from tpf.settings import Settings
from tpf.substrate import AwsClients, open_clients
from tpfctl import lifeline
from tpfctl.bench.observe import difference

FAR_FUTURE_MS = 4_000_000_000_000
"""Due time of seed records: the sweepers' due index never returns them."""
SEEDS = 20
RECEIPT_RESERVE = 20
# Replayed in the order a transition makes them: take the message, read, write, pass it on.
ORDER = (
    "ReceiveMessage",
    "GetItem",
    "BatchGetItem",
    "Query",
    "GetObject",
    "HeadObject",
    "PutObject",
    "PutItem",
    "UpdateItem",
    "TransactWriteItems",
    "SendMessage",
    "SendMessageBatch",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "BatchWriteItem",
)

Call = Callable[[int], Awaitable[None]]


class Requests:
    """One representative request per operation, against the stack's own resources."""

    def __init__(self, aws: AwsClients, plan: dict[str, Any]) -> None:
        self.aws, self.plan = aws, plan
        self.resources: dict[str, str] = plan["resources"]
        self.body = "x" * int(plan["message_bytes"])
        self.receipts: list[str] = []
        self.seeds = [f"bare#{uuid.uuid4().hex}" for _ in range(SEEDS)]
        self.starved = 0
        self.urls: dict[str, str] = {}

    def table(self) -> dict[tuple[str, str], Call]:
        return {
            ("dynamodb", "PutItem"): self.put_item,
            ("dynamodb", "GetItem"): self.get_item,
            ("dynamodb", "UpdateItem"): self.update_item,
            ("dynamodb", "Query"): self.query,
            ("dynamodb", "BatchWriteItem"): self.batch_write,
            ("dynamodb", "BatchGetItem"): self.batch_get,
            ("dynamodb", "TransactWriteItems"): self.transact_write,
            ("sqs", "SendMessage"): lambda n: self.send(1),
            ("sqs", "SendMessageBatch"): self.send,
            ("sqs", "ReceiveMessage"): self.receive,
            ("sqs", "DeleteMessage"): lambda n: self.delete(1),
            ("sqs", "DeleteMessageBatch"): self.delete,
            ("sqs", "ChangeMessageVisibility"): self.change_visibility,
            # Queue depth, read on a timer: a round slowed by a busy machine can include one.
            ("sqs", "GetQueueAttributes"): self.queue_depth,
            ("s3", "PutObject"): self.put_object,
            ("s3", "GetObject"): self.get_object,
            ("s3", "HeadObject"): self.head_object,
        }

    # -- preparing (not timed) ------------------------------------------------------------------

    async def prepare(self, prefill: int) -> None:
        sqs = self.aws.sqs
        for role in ("send_queue", "receive_queue"):
            name = self.resources[role]
            self.urls[role] = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        for start in range(0, prefill + RECEIPT_RESERVE, 10):
            entries = min(10, prefill + RECEIPT_RESERVE - start)
            await self._send_to("receive_queue", entries)
        for key in self.seeds:
            await self._put(key)
        await self.aws.s3.put_object(Bucket=self.resources["bucket"], Key="bare/seed", Body=b"{}")
        while len(self.receipts) < RECEIPT_RESERVE:
            await self.receive(10)

    # -- DynamoDB -----------------------------------------------------------------------------

    def _record(self, key: str) -> dict[str, Any]:
        return {
            "pk": {"S": key},
            "st": {"S": "RUNNING"},
            "v": {"N": "1"},
            "ds": {"S": str(random.randrange(8))},
            "dt": {"N": str(FAR_FUTURE_MS)},
            "wk": {"N": str(FAR_FUTURE_MS)},
            "tk": {"S": uuid.uuid4().hex},
            "body": {"S": "r" * 500},
        }

    async def _put(self, key: str) -> None:
        await self.aws.dynamodb.put_item(
            TableName=self.resources["table"],
            Item=self._record(key),
            ConditionExpression="attribute_not_exists(pk)",
            ReturnConsumedCapacity="INDEXES",
        )

    async def put_item(self, _: int) -> None:
        await self._put(f"bare#{uuid.uuid4().hex}")

    async def get_item(self, _: int) -> None:
        await self.aws.dynamodb.get_item(
            TableName=self.resources["table"],
            Key={"pk": {"S": random.choice(self.seeds)}},
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )

    async def update_item(self, _: int) -> None:
        await self.aws.dynamodb.update_item(
            TableName=self.resources["table"],
            Key={"pk": {"S": random.choice(self.seeds)}},
            UpdateExpression="SET tk = :tk",
            ExpressionAttributeValues={":tk": {"S": uuid.uuid4().hex}},
            ReturnConsumedCapacity="INDEXES",
        )

    async def query(self, _: int) -> None:
        await self.aws.dynamodb.query(
            TableName=self.resources["table"],
            IndexName=self.resources["due_index"],
            KeyConditionExpression="ds = :shard AND wk <= :now",
            ExpressionAttributeValues={
                ":shard": {"S": str(random.randrange(8))},
                ":now": {"N": str(int(time.time() * 1000))},
            },
            Limit=100,
            ReturnConsumedCapacity="INDEXES",
        )

    async def batch_write(self, entries: int) -> None:
        key = f"bare#{uuid.uuid4().hex}"
        items = [
            {"PutRequest": {"Item": {"pk": {"S": key}, "sk": {"N": str(i)}, "st": {"S": "X"}}}}
            for i in range(entries)
        ]
        await self.aws.dynamodb.batch_write_item(
            RequestItems={self.resources["history_table"]: items},
            ReturnConsumedCapacity="TOTAL",
        )

    async def batch_get(self, entries: int) -> None:
        keys = [{"pk": {"S": k}} for k in random.sample(self.seeds, min(entries, SEEDS))]
        await self.aws.dynamodb.batch_get_item(
            RequestItems={self.resources["table"]: {"Keys": keys}},
            ReturnConsumedCapacity="TOTAL",
        )

    async def transact_write(self, entries: int) -> None:
        puts = [
            {"Put": {"TableName": self.resources["table"], "Item": self._record(f"bare#{i}")}}
            for i in (uuid.uuid4().hex for _ in range(max(1, entries)))
        ]
        await self.aws.dynamodb.transact_write_items(
            TransactItems=puts, ReturnConsumedCapacity="INDEXES"
        )

    # -- SQS ----------------------------------------------------------------------------------

    async def _send_to(self, role: str, entries: int) -> None:
        await self.aws.sqs.send_message_batch(
            QueueUrl=self.urls[role],
            Entries=[{"Id": str(i), "MessageBody": self.body} for i in range(entries)],
        )

    async def send(self, entries: int) -> None:
        await self._send_to("send_queue", entries)

    async def receive(self, entries: int) -> None:
        response = await self.aws.sqs.receive_message(
            QueueUrl=self.urls["receive_queue"],
            MaxNumberOfMessages=entries,
            WaitTimeSeconds=0,
            VisibilityTimeout=900,
        )
        self.receipts += [m["ReceiptHandle"] for m in response.get("Messages", [])]

    async def delete(self, entries: int) -> None:
        taken, self.receipts = self.receipts[:entries], self.receipts[entries:]
        if not taken:
            self.starved += 1
            return
        await self.aws.sqs.delete_message_batch(
            QueueUrl=self.urls["receive_queue"],
            Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(taken)],
        )

    async def change_visibility(self, _: int) -> None:
        if not self.receipts:
            self.starved += 1
            return
        await self.aws.sqs.change_message_visibility(
            QueueUrl=self.urls["receive_queue"],
            ReceiptHandle=self.receipts[-1],
            VisibilityTimeout=900,
        )

    # -- S3 -----------------------------------------------------------------------------------

    async def put_object(self, _: int) -> None:
        await self.aws.s3.put_object(
            Bucket=self.resources["bucket"], Key=f"bare/{uuid.uuid4().hex}", Body=self.body
        )

    async def get_object(self, _: int) -> None:
        response = await self.aws.s3.get_object(Bucket=self.resources["bucket"], Key="bare/seed")
        async with response["Body"] as body:
            await body.read()

    async def head_object(self, _: int) -> None:
        await self.aws.s3.head_object(Bucket=self.resources["bucket"], Key="bare/seed")

    async def queue_depth(self, _: int) -> None:
        await self.aws.sqs.get_queue_attributes(
            QueueUrl=self.urls["receive_queue"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )


async def replay(plan: dict[str, Any], requests: Requests) -> list[str]:
    """Issue the plan; returns the operations it had no request for."""
    calls = requests.table()
    rank = {op: i for i, op in enumerate(ORDER)}
    ops = sorted(plan["ops"], key=lambda o: rank.get(o["operation"], len(ORDER)))
    runnable = [o for o in ops if (o["service"], o["operation"]) in calls]
    credit: defaultdict[str, float] = defaultdict(float)
    remaining = int(plan["executions"])

    async def one_execution() -> None:
        for op in runnable:
            name = f"{op['service']}.{op['operation']}"
            credit[name] += float(op["per_execution"])
            whole = int(credit[name])
            credit[name] -= whole
            for _ in range(whole):
                await calls[(op["service"], op["operation"])](int(op.get("entries", 1)))

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_execution()

    await asyncio.gather(*(lane() for _ in range(int(plan["concurrency"]))))
    return [f"{o['service']}.{o['operation']}" for o in ops if o not in runnable]


async def main(plan: dict[str, Any]) -> dict[str, Any]:
    ledger = RequestLedger()
    async with open_clients(Settings(), ledger=ledger) as aws:
        requests = Requests(aws, plan)
        await requests.prepare(int(plan["prefill"]))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        before, cpu, started = ledger.snapshot(), time.process_time(), time.time()
        skipped = await replay(plan, requests)
        finished, cpu = time.time(), time.process_time() - cpu
        return {
            "role": plan["role"],
            "started": started,
            "finished": finished,
            "cpu_seconds": cpu,
            "ledger": difference(ledger.snapshot(), before),
            "not_replayed": skipped,
            "starved": requests.starved,
        }


if __name__ == "__main__":
    lifeline.follow_owner()
    result = asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
    print(json.dumps(result), flush=True)
