"""The harness's fault proxy against moto's server: it forwards faithfully, and each fault it
draws reaches the SDK in the shape AWS would send it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from prometheus_client import REGISTRY

from tpf.accounting import LEDGER
from tpfctl.chaos.faults import SERVICES, FaultProxy, FaultRates
from tpfctl.embedded import EmbeddedSubstrate

ONCE = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5
)


@pytest.fixture(scope="module")
def moto() -> Iterator[EmbeddedSubstrate]:
    substrate = EmbeddedSubstrate.start()
    try:
        yield substrate
    finally:
        substrate.stop()


@pytest.fixture
def through(moto: EmbeddedSubstrate, request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    rates = getattr(request, "param", FaultRates())
    with FaultProxy({s: moto.endpoint_url for s in SERVICES}, rates, rng=random.Random(7)) as proxy:
        yield proxy


def client(proxy: FaultProxy, service: str) -> object:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=proxy.endpoints[service],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=ONCE,
    )


def test_without_faults_every_service_works_through_the_proxy(through: FaultProxy) -> None:
    dynamodb, sqs, s3 = (client(through, s) for s in SERVICES)
    table = f"t-{uuid.uuid4().hex[:6]}"
    dynamodb.create_table(  # type: ignore[attr-defined]
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": "é"}})  # type: ignore[attr-defined]
    got = dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})  # type: ignore[attr-defined]
    assert got["Item"]["v"]["S"] == "é"
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:6]}")["QueueUrl"]  # type: ignore[attr-defined]
    sqs.send_message(QueueUrl=url, MessageBody="hello")  # type: ignore[attr-defined]
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]  # type: ignore[attr-defined]
    assert message["Body"] == "hello"
    bucket = f"b-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    s3.put_object(Bucket=bucket, Key="k", Body=b"\x00" * 70_000)  # type: ignore[attr-defined]
    body = s3.get_object(Bucket=bucket, Key="k")["Body"].read()  # type: ignore[attr-defined]
    assert body == b"\x00" * 70_000
    assert through.tally.snapshot() == {}


@pytest.mark.parametrize("through", [FaultRates(throttle=1.0)], indirect=True)
def test_throttling_reaches_the_sdk_as_each_service_throttles(through: FaultProxy) -> None:
    dynamodb, sqs, s3 = (client(through, s) for s in SERVICES)
    codes = []
    for call in (
        lambda: dynamodb.list_tables(),  # type: ignore[attr-defined]
        lambda: sqs.list_queues(),  # type: ignore[attr-defined]
        lambda: s3.list_buckets(),  # type: ignore[attr-defined]
    ):
        with pytest.raises(ClientError) as refused:
            call()
        codes.append(refused.value.response["Error"]["Code"])
    assert codes == ["ProvisionedThroughputExceededException", "RequestThrottled", "SlowDown"]
    assert through.tally.snapshot()["throttle"] == 3


@pytest.mark.parametrize("through", [FaultRates(error=1.0)], indirect=True)
def test_server_errors_sometimes_follow_a_change_that_happened(
    through: FaultProxy, moto: EmbeddedSubstrate
) -> None:
    sqs = client(through, "sqs")
    direct = boto3.client(
        "sqs", endpoint_url=moto.endpoint_url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    url = direct.create_queue(QueueName=f"q-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    for _ in range(10):
        with pytest.raises(ClientError) as failed:
            sqs.send_message(QueueUrl=url, MessageBody="maybe")  # type: ignore[attr-defined]
        assert failed.value.response["Error"]["Code"] == "InternalError"
    counts = through.tally.snapshot()
    landed = int(
        direct.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    assert landed == counts.get("error_after_change", 0) > 0
    assert counts.get("error", 0) > 0


def test_a_blackout_makes_every_service_unreachable_then_passes(through: FaultProxy) -> None:
    sqs = client(through, "sqs")
    through.blackout(60)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        sqs.list_queues()  # type: ignore[attr-defined]
    through.blackout(0)
    sqs.list_queues()  # type: ignore[attr-defined]
    assert through.tally.snapshot()["blackout"] == 2


@pytest.mark.parametrize("through", [FaultRates(throttle=1.0)], indirect=True)
def test_every_throttled_attempt_shows_in_the_substrate_error_metric(through: FaultProxy) -> None:
    labels = {"service": "dynamodb", "operation": "ListTables"}
    code = {**labels, "code": "ProvisionedThroughputExceededException"}
    before = REGISTRY.get_sample_value("tpf_substrate_errors_total", code) or 0.0
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=through.endpoints["dynamodb"], region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )  # fmt: skip
    LEDGER.attach(dynamodb.meta.events)
    with pytest.raises(ClientError):
        dynamodb.list_tables()
    assert REGISTRY.get_sample_value("tpf_substrate_errors_total", code) == before + 3
