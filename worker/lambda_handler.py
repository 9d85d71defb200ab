"""The transition worker as an SQS-triggered Lambda function: ``worker.lambda_handler.handler``.

Lambda's event source mapping receives commands from the work queue. Each record runs through
the same :class:`~worker.command.CommandHandler` as the long-running poller, and its
:class:`~worker.command.Settlement` becomes Lambda's partial batch response::

    delete     success: the event source mapping deletes the message
    hand_back  batch item failure: visible again after the visibility timeout; the redrive policy
               retires a message no worker can run to the DLQ after maxReceiveCount receives
    keep       batch item failure: redelivered after the visibility timeout and run again under
               the same transition key

The mapping must have ``FunctionResponseTypes: [ReportBatchItemFailures]``, or it ignores the
response and deletes the whole batch. Heartbeats go on the results queue while a transition runs,
as in the poller; visibility is not extended, so the work queue's visibility timeout must exceed
the function timeout.

Records of one batch run one after another: a Lambda function scales by concurrent invocations,
and the mapping's batch size bounds how long one invocation takes.

Configuration is the worker's: ``Settings()`` from the ``TPF_*`` variables, ``TPF_PIPELINES``
(``module:attribute``, comma-separated, as ``tpf worker`` reads it) and ``TPF_RELEASE`` (the
release the function was deployed with).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import SqsModel, SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from tpf.errors import ConfigurationError, TpfError
from tpf.loading import load_pipeline
from tpf.payloads.dynamodb_s3 import payload_store
from tpf.pipeline import Pipeline
from tpf.queues import Received, SqsQueue
from tpf.registry import Registry
from tpf.registry.dynamodb import DynamoRegistryTable
from tpf.settings import Settings
from tpf.signing import Signer
from tpf.substrate import open_clients
from tpf.wire import WorkerIdentity
from worker.command import CommandHandler, Settlement
from worker.fence import DynamoTransitionFence
from worker.role import verify_release

SERVICE = "tpf-worker"
NAMESPACE = "TPF"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Also when every record fails, answer with the list: the mapping then retries exactly those.
processor = BatchProcessor(
    event_type=EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False
)


class Redeliver(TpfError):
    """A record that must come back; the batch processor reports it as a batch item failure."""


@dataclass
class Container:
    """What a Lambda container builds at its first invocation and reuses while it lives.

    One event loop for the container's life: AWS clients are bound to the loop that opened them,
    so a loop per invocation (``asyncio.run``) would orphan them.
    """

    loop: asyncio.AbstractEventLoop
    commands: CommandHandler
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)

    @classmethod
    def from_environment(cls) -> Container:
        settings = Settings()  # TPF_RELEASE names the release, as for `tpf worker`
        return cls.open(settings, configured_pipelines(), release_version=settings.release)

    @classmethod
    def open(
        cls, settings: Settings, pipelines: Sequence[Pipeline], *, release_version: str
    ) -> Container:
        loop = asyncio.new_event_loop()
        resources = AsyncExitStack()
        try:
            commands = loop.run_until_complete(
                _command_handler(settings, pipelines, release_version, resources)
            )
        except BaseException:
            loop.run_until_complete(resources.aclose())
            loop.close()
            raise
        return cls(loop, commands, resources)

    def settle(self, message: Received) -> Settlement:
        return self.loop.run_until_complete(self.commands.handle(message))

    def close(self) -> None:
        self.loop.run_until_complete(self.resources.aclose())
        self.loop.close()


async def _command_handler(
    settings: Settings,
    pipelines: Sequence[Pipeline],
    release_version: str,
    resources: AsyncExitStack,
) -> CommandHandler:
    signer = Signer.from_references(
        settings.signing_key, settings.signing_key_previous, settings=settings
    )
    aws = await resources.enter_async_context(open_clients(settings))
    # A function deployed with code that is not the release it names refuses every command
    # rather than run it: the cold start fails, and the messages stay for a correct one.
    registry = Registry(DynamoRegistryTable(aws.dynamodb, settings.resource("registry")))
    await verify_release(registry, list(pipelines), release_version)
    return CommandHandler(
        pipelines={p.id: p for p in pipelines},
        results=await SqsQueue.open(aws.sqs, settings.resource("results")),
        payloads=payload_store(settings, aws),
        signer=signer,
        timings=settings.timings,
        identity=WorkerIdentity(worker_id=lambda_worker_id(), release_version=release_version),
        # A child of the Powertools logger: its records come out as the function's JSON lines.
        log=logging.getLogger(f"{SERVICE}.commands"),
        fence=DynamoTransitionFence(aws.dynamodb, settings.resource("executions")),
    )


def configured_pipelines() -> list[Pipeline]:
    references = [r.strip() for r in os.environ.get("TPF_PIPELINES", "").split(",") if r.strip()]
    if not references:
        raise ConfigurationError("set TPF_PIPELINES to the pipelines to host (module:attribute)")
    return [load_pipeline(r) for r in references]


def lambda_worker_id() -> str:
    """One identity per container, named after the function it belongs to."""
    return f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'lambda')}-{uuid.uuid4().hex[:6]}"


_container: Container | None = None


def container() -> Container:
    """This container's parts, built at its first invocation (the cold start)."""
    global _container
    if _container is None:
        _container = Container.from_environment()
    return _container


def received(record: SqsRecordModel) -> Received:
    if not isinstance(record.body, str):  # SqsRecordModel itself keeps the body as text
        raise TypeError(f"record {record.messageId} has a parsed body")
    return Received(
        message_id=record.messageId,
        receipt=record.receiptHandle,
        body=record.body,
        receive_count=int(record.attributes.ApproximateReceiveCount),
    )


def settle_record(record: SqsRecordModel) -> None:
    """The batch processor's record handler: raising reports the record as failed."""
    settlement = container().settle(received(record))
    if settlement.rejected is not None:
        with single_metric(
            name="CommandsRejected",
            unit=MetricUnit.Count,
            value=1,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as rejection:  # its own metric set: the reason is a dimension
            rejection.add_dimension(name="reason", value=settlement.rejected)
    if settlement.outcome is not None:
        metrics.add_metric(name="TransitionsExecuted", unit=MetricUnit.Count, value=1)
    if settlement.disposal != "delete":
        metrics.add_metric(name="CommandsRedelivered", unit=MetricUnit.Count, value=1)
        raise Redeliver(f"{record.messageId}: {settlement.disposal}")


@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    try:
        batch = parse(event=event, model=SqsModel)
    except ValidationError:
        # Another trigger wired to this function is a deployment mistake: fail the invocation
        # loudly (and count it, to alarm on) instead of reporting every record as failed.
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="CommandsReceived", unit=MetricUnit.Count, value=len(batch.Records))
    return process_partial_response(
        event=event, record_handler=settle_record, processor=processor, context=context
    )
