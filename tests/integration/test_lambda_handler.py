"""The Lambda handler against the LocalStack stack, fed with the commands a real coordinator sent.

Lambda's SQS event source mapping is played by the test: it receives from the work queue with
boto3, builds the event Lambda would deliver, invokes the handler, then deletes the records the
handler did not report as failed, as the mapping does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SqsModel

from coordinator.role import build
from coordinator.wiring import Coordinator
from examples.orders import orders
from infra.provision import provision, teardown
from infra.resources import work_queue
from tests.substrates import TestStack, settings_for
from tests.waiting import eventually
from tpf.clock import now_ms
from tpf.queues import Outgoing, Queue, Received
from tpf.records import Status
from tpf.registry import register_pipeline
from tpf.signing import Signer
from tpf.substrate import open_clients, sync_client
from tpf.wire import TransitionResult, decode
from worker import lambda_handler

pytestmark = pytest.mark.substrate

TENANT = "acme"


@dataclass(frozen=True)
class FakeContext:
    function_name: str = "tpf-worker"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:tpf-worker"
    aws_request_id: str = "request-1"


@pytest.fixture(scope="module")
def stack(localstack_stack: TestStack) -> Iterator[TestStack]:
    """A stack of this module's own, so its work queue holds only the commands sent here."""
    settings = settings_for("localstack", localstack_stack.endpoints, submit_without_worker=True)
    provision(settings, endpoints=localstack_stack.endpoints, releases=[(orders.id, "1.0.0")])
    yield TestStack("localstack", settings, localstack_stack.endpoints)
    teardown(settings, endpoints=localstack_stack.endpoints)


@pytest.fixture
def function_environment(stack: TestStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The variables a deployed function gets; its container is built at the first invocation."""
    settings, endpoints = stack.settings, stack.endpoints
    variables = {
        "TPF_STACK": settings.stack,
        "TPF_SUBSTRATE": "localstack",
        "TPF_PROFILE": "test",
        "TPF_REGION": settings.region,
        "AWS_ENDPOINT_URL_DYNAMODB": str(endpoints.dynamodb),
        "AWS_ENDPOINT_URL_SQS": str(endpoints.sqs),
        "AWS_ENDPOINT_URL_S3": str(endpoints.s3),
        "TPF_SIGNING_SECRET": uuid.uuid4().hex,
        "TPF_PIPELINES": "examples.orders:orders",
        "TPF_RELEASE": "1.0.0",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lambda_handler, "_container", None)
    yield
    if lambda_handler._container is not None:
        lambda_handler._container.close()


@pytest.fixture
async def coordinator(stack: TestStack, function_environment: None) -> AsyncIterator[Coordinator]:
    """A coordinator replica over the stack, consuming the results queue."""
    settings = stack.settings
    signer = Signer.from_references(settings.signing_key)
    async with open_clients(settings, endpoints=stack.endpoints) as aws:
        replica = await build(settings, aws, signer)
        await register_pipeline(replica.registry, orders, "1.0.0", now_ms=now_ms())
        stop = asyncio.Event()
        consuming = asyncio.create_task(replica.results.run(stop))
        yield replica
        stop.set()
        await consuming
        await replica.close()


class WorkQueue:
    """The work queue through boto3, as the event source mapping sees it."""

    def __init__(self, stack: TestStack) -> None:
        self.sqs = sync_client(stack.settings, "sqs", endpoints=stack.endpoints)
        self.region = stack.settings.region
        self.url = self.sqs.get_queue_url(
            QueueName=stack.settings.resource(work_queue(orders.id, "1.0.0"))
        )["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        self.arn = attributes["Attributes"]["QueueArn"]

    def receive(self, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for _ in range(20):  # long polls of 1 s: a deadline, not a sleep
            if len(found) >= count:
                break
            found += self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        assert len(found) == count, f"{len(found)} of {count} messages arrived"
        return found

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def delete(self, messages: Sequence[dict[str, Any]]) -> None:
        for message in messages:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def release(self, message: dict[str, Any]) -> None:
        """Stands in for the message's visibility timeout running out."""
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    def event(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The event Lambda's SQS event source mapping delivers for ``messages``."""
        return {"Records": [self._record(m) for m in messages]}

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message["Attributes"],
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


class RefusingOnce:
    """The results queue, unreachable for the first result of one execution."""

    def __init__(self, queue: Queue, execution_id: str) -> None:
        self.queue, self.execution_id = queue, execution_id
        self.name = queue.name
        self.refused = 0

    async def send(self, message: Outgoing) -> None:
        envelope = decode(message.body)
        ours = isinstance(envelope, TransitionResult) and envelope.execution_id == self.execution_id
        if ours and not self.refused:
            self.refused += 1
            raise ConnectionError("results queue unreachable")
        await self.queue.send(message)

    async def send_many(self, messages: Sequence[Outgoing]) -> None:
        for message in messages:
            await self.send(message)

    async def receive(self, *, max_messages: int = 10, wait_s: int = 20) -> list[Received]:
        return await self.queue.receive(max_messages=max_messages, wait_s=wait_s)

    async def delete(self, receipt: str) -> None:
        await self.queue.delete(receipt)

    async def change_visibility(self, receipt: str, seconds: int) -> None:
        await self.queue.change_visibility(receipt, seconds)


async def submit(coordinator: Coordinator, order_id: str) -> str:
    outcome = await coordinator.service.submit(
        tenant_id=TENANT,
        pipeline_id=orders.id,
        value={"orderId": order_id, "amountCents": 1000, "customer": "Ada"},
        idempotency_key=uuid.uuid4().hex,
        now_ms=now_ms(),
    )
    return outcome.record.execution_id


async def invoke(work: WorkQueue, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Invoke the handler as the mapping would, then delete the records not reported failed."""
    event = work.event(messages)
    parse(event=event, model=SqsModel)  # the event has the shape Lambda delivers
    # In a thread, as in Lambda: the handler runs its container's own event loop.
    response: dict[str, Any] = await asyncio.to_thread(lambda_handler.handler, event, FakeContext())
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    await asyncio.to_thread(work.delete, [m for m in messages if m["MessageId"] not in failed])
    return response


def execution_of(message: dict[str, Any]) -> str:
    execution_id: str = json.loads(message["Body"])["executionId"]
    return execution_id


async def test_commands_from_a_coordinator_run_in_the_handler_and_their_executions_complete(
    stack: TestStack, coordinator: Coordinator
) -> None:
    work = WorkQueue(stack)
    good = [await submit(coordinator, f"o-{i}") for i in range(2)]
    forged, unsent = await submit(coordinator, "o-forged"), await submit(coordinator, "o-unsent")
    received = {execution_of(m): m for m in await asyncio.to_thread(work.receive, 4)}
    assert set(received) == {*good, forged, unsent}

    # Someone without the key puts an altered copy of a command on the queue.
    altered = json.loads(received[forged]["Body"]) | {"attempt": 7}
    await asyncio.to_thread(work.delete, [received[forged]])
    await asyncio.to_thread(work.send, json.dumps(altered))
    [received[forged]] = await asyncio.to_thread(work.receive, 1)

    container = await asyncio.to_thread(lambda_handler.container)  # the cold start
    container.commands.results = RefusingOnce(container.commands.results, unsent)

    response = await invoke(work, [received[e] for e in (*good, forged, unsent)])

    # The forged command is rejected and deleted; only the unsent result asks for redelivery.
    assert response == {"batchItemFailures": [{"itemIdentifier": received[unsent]["MessageId"]}]}

    await asyncio.to_thread(work.release, received[unsent])
    [redelivered] = await asyncio.to_thread(work.receive, 1)
    assert redelivered["MessageId"] == received[unsent]["MessageId"]
    assert redelivered["Attributes"]["ApproximateReceiveCount"] == "2"
    assert await invoke(work, [redelivered]) == {"batchItemFailures": []}

    async def completed() -> bool:
        records = [await coordinator.service.status(TENANT, e) for e in (*good, unsent)]
        return all(r.status is Status.SUCCEEDED for r in records)

    await eventually(completed, interval=0.1)
    outcome = await coordinator.service.result(TENANT, unsent)
    assert outcome.result["orderId"] == "o-unsent"
    # The forged command ran nowhere: that execution waits for its deadline and a retry.
    assert (await coordinator.service.status(TENANT, forged)).status is Status.RUNNING
