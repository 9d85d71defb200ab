"""The worker table on the fake, moto's server and DynamoDB Local; event source mappings on
moto's Lambda."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import aioboto3
import pytest

from coordinator.workers import WorkerDirectory, WorkerRegistration, WorkerTable
from coordinator.workers.dynamodb import DynamoWorkerTable
from coordinator.workers.lambda_mappings import LambdaEventSourceMappings
from coordinator.workers.memory import InMemoryWorkerTable
from tests.substrates import TestStack
from tpf.errors import Conflict, NotFound
from tpf.registry.worker_items import DRAIN_ATTRIBUTE, worker_item_key
from tpf.substrate import EMULATOR_CREDENTIALS, open_clients
from tpf.wire import HostedPipeline, WorkerPresence
from tpfctl.embedded import EmbeddedSubstrate

T0 = 1_700_000_000_000
CONTRACT = "sha256:" + "c" * 64


def pipeline_id() -> str:
    return f"org.tests.workers-{uuid.uuid4().hex[:8]}"


async def _open_dynamo_table(
    request: pytest.FixtureRequest,
) -> AsyncIterator[DynamoWorkerTable]:
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        # Two items a page, so a query of a few workers crosses pages.
        yield DynamoWorkerTable(aws.dynamodb, stack.settings.resource("registry"), page_size=2)


@pytest.fixture(params=["memory", "embedded", "localstack"])
async def table(request: pytest.FixtureRequest) -> AsyncIterator[WorkerTable]:
    if request.param == "memory":
        yield InMemoryWorkerTable()
        return
    async for dynamo in _open_dynamo_table(request):
        yield dynamo


@pytest.fixture(params=["embedded", "localstack"])
async def dynamo_table(request: pytest.FixtureRequest) -> AsyncIterator[DynamoWorkerTable]:
    async for dynamo in _open_dynamo_table(request):
        yield dynamo


async def test_a_put_sets_what_it_names_and_keeps_registration_and_drain(
    table: WorkerTable,
) -> None:
    pk, sk = worker_item_key(pipeline_id(), "w1")
    first = await table.put(
        pk, sk, {"rv": "1.0.0", "ep": "http://w1", "hb": T0}, registered_at_ms=T0
    )
    assert (first["rv"], first["ep"], first["hb"], first["ra"]) == ("1.0.0", "http://w1", T0, T0)
    await table.request_drain(pk, sk, at_ms=T0 + 1)

    after = await table.put(pk, sk, {"rv": "1.0.1", "ep": None, "hb": T0 + 2}, registered_at_ms=9)
    assert (after["rv"], after["hb"], after["ra"], after[DRAIN_ATTRIBUTE]) == (
        "1.0.1",
        T0 + 2,
        T0,
        T0 + 1,
    )
    assert "ep" not in after
    assert await table.get(pk, sk) == after


async def test_heartbeats_and_drains_need_an_existing_worker(table: WorkerTable) -> None:
    pk, sk = worker_item_key(pipeline_id(), "nobody")
    with pytest.raises(NotFound):
        await table.heartbeat(pk, sk, at_ms=T0, expires_at_s=T0 // 1000)
    with pytest.raises(NotFound):
        await table.request_drain(pk, sk, at_ms=T0)
    assert await table.get(pk, sk) is None  # a refused update creates nothing


async def test_a_heartbeat_moves_the_heartbeat_and_expiry_of_process_workers_only(
    table: WorkerTable,
) -> None:
    p = pipeline_id()
    pk, sk = worker_item_key(p, "w1")
    await table.put(pk, sk, {"kd": "process", "hb": T0, "ttl": 1}, registered_at_ms=T0)
    beat = await table.heartbeat(pk, sk, at_ms=T0 + 5, expires_at_s=2)
    assert (beat["hb"], beat["ttl"], beat["ra"]) == (T0 + 5, 2, T0)

    lpk, lsk = worker_item_key(p, "fn")
    await table.put(lpk, lsk, {"kd": "lambda", "fn": "f"}, registered_at_ms=T0)
    with pytest.raises(Conflict):
        await table.heartbeat(lpk, lsk, at_ms=T0, expires_at_s=2)


async def test_a_query_reads_every_worker_of_a_pipeline_across_pages(table: WorkerTable) -> None:
    p = pipeline_id()
    for n in range(5):
        await table.put(*worker_item_key(p, f"w{n}"), {"rv": "1"}, registered_at_ms=T0)
    await table.put(*worker_item_key(pipeline_id(), "elsewhere"), {"rv": "1"}, registered_at_ms=T0)
    items = await table.query(worker_item_key(p, "")[0])
    assert [i["sk"] for i in items] == [f"worker#w{n}" for n in range(5)]


async def test_a_worker_reads_its_drain_request_as_a_number(
    dynamo_table: DynamoWorkerTable,
) -> None:
    client, name = dynamo_table.client, dynamo_table.table_name
    directory = WorkerDirectory(dynamo_table, stale_after=timedelta(seconds=15))
    p = pipeline_id()
    presence = WorkerPresence(
        worker_id="w1",
        release_version="1.0.0",
        pipelines=[HostedPipeline(pipeline_id=p, contract_version=CONTRACT)],
        sent_at_epoch_ms=T0,
    )
    await directory.report(presence, T0)
    pk, sk = worker_item_key(p, "w1")
    before = await client.get_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    assert DRAIN_ATTRIBUTE not in before["Item"]
    assert before["Item"]["ttl"] == {"N": str(T0 // 1000 + 86_400)}

    await directory.drain(p, "w1", T0 + 7)
    await directory.report(presence, T0 + 8)
    after = await client.get_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    assert after["Item"][DRAIN_ATTRIBUTE] == {"N": str(T0 + 7)}
    assert [w.state for w in await directory.list(p, T0 + 8)] == ["DRAINING"]


async def test_a_registered_lambda_worker_has_no_expiry(table: WorkerTable) -> None:
    directory = WorkerDirectory(table, stale_after=timedelta(seconds=15))
    p = pipeline_id()
    registration = WorkerRegistration(
        worker_id="fn-1",
        contract_version=CONTRACT,
        release_version="1.0.0",
        kind="lambda",
        function_name="tpf-worker",
    )
    record = await directory.register(p, registration, T0)
    assert (record.kind, record.function_name, record.state) == ("lambda", "tpf-worker", "HEALTHY")
    item = await table.get(*worker_item_key(p, "fn-1"))
    assert item is not None and "ttl" not in item and "hb" not in item


# -- event source mappings on moto's Lambda ---------------------------------------------------


def handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.fixture
async def aws_on_moto(moto_server: EmbeddedSubstrate) -> AsyncIterator[dict[str, Any]]:
    session = aioboto3.Session()
    kwargs = {
        "region_name": "us-east-1",
        "endpoint_url": moto_server.endpoint_url,
        **EMULATOR_CREDENTIALS,
    }
    async with AsyncExitStack() as stack:
        yield {
            s: await stack.enter_async_context(session.client(s, **kwargs))
            for s in ("lambda", "iam", "sqs")
        }


async def test_a_lambda_worker_is_consuming_while_its_mapping_is_enabled(
    aws_on_moto: dict[str, Any],
) -> None:
    lambda_, iam, sqs = aws_on_moto["lambda"], aws_on_moto["iam"], aws_on_moto["sqs"]
    suffix = uuid.uuid4().hex[:8]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = await iam.create_role(
        RoleName=f"tpf-worker-{suffix}", AssumeRolePolicyDocument=json.dumps(trust)
    )
    function = f"tpf-worker-{suffix}"
    await lambda_.create_function(
        FunctionName=function,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": handler_zip()},
    )
    mappings = LambdaEventSourceMappings(lambda_)
    assert not await mappings.enabled(function)  # no mapping yet
    assert not await mappings.enabled(f"missing-{suffix}")

    queue = await sqs.create_queue(QueueName=f"tpf-work-{suffix}")
    attributes = await sqs.get_queue_attributes(
        QueueUrl=queue["QueueUrl"], AttributeNames=["QueueArn"]
    )
    mapping = await lambda_.create_event_source_mapping(
        EventSourceArn=attributes["Attributes"]["QueueArn"], FunctionName=function, BatchSize=10
    )
    assert await mappings.enabled(function)

    await lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    assert not await mappings.enabled(function)

    directory = WorkerDirectory(
        InMemoryWorkerTable(), stale_after=timedelta(seconds=15), mappings=mappings
    )
    registration = WorkerRegistration(
        worker_id=function,
        contract_version=CONTRACT,
        release_version="1.0.0",
        kind="lambda",
        function_name=function,
    )
    assert (await directory.register("org.tests.lambda", registration, T0)).state == "STALE"
    await lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    directory.invalidate()
    assert [w.worker_id for w in await directory.healthy("org.tests.lambda", "1.0.0", T0)] == [
        function
    ]
