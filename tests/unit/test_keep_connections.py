"""Only an emulator's SQS is asked to keep connections open: requests to AWS go out as the
SDK makes them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from botocore.awsrequest import AWSPreparedRequest
from botocore.hooks import HierarchicalEmitter

from tpf.settings import Settings
from tpf.substrate import keep_connections


def _sent(substrate: str, service: str) -> dict[str, str]:
    events = HierarchicalEmitter()
    client = SimpleNamespace(meta=SimpleNamespace(events=events))
    keep_connections(client, Settings(substrate=substrate), service)
    request = AWSPreparedRequest("POST", "http://127.0.0.1:4566/", {}, b"{}", stream_output=False)
    events.emit(f"before-send.{service}.SendMessageBatch", request=request)
    return dict(request.headers)


@pytest.mark.parametrize("substrate", ["localstack", "embedded"])
def test_an_emulators_sqs_is_asked_to_keep_the_connection(substrate: str) -> None:
    assert _sent(substrate, "sqs") == {"Connection": "keep-alive"}


@pytest.mark.parametrize(("substrate", "service"), [("aws", "sqs"), ("localstack", "dynamodb")])
def test_aws_and_other_services_are_sent_as_the_sdk_makes_them(
    substrate: str, service: str
) -> None:
    assert _sent(substrate, service) == {}
