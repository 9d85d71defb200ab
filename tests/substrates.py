"""Test substrates: the embedded moto server and the LocalStack stack.

A missing LocalStack stack skips its tests locally (with the reason) and fails them under
``CI=true``, where ``.ci/run`` is responsible for starting it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tpf.settings import Settings
from tpf.substrate import LOCALSTACK_DEFAULTS, Endpoints

SUBSTRATES = ("embedded", "localstack")


@dataclass(frozen=True)
class TestStack:
    """A provisioned stack on one substrate, shared by the tests of a session."""

    __test__ = False

    substrate: str
    settings: Settings
    endpoints: Endpoints


def localstack_endpoints() -> Endpoints:
    return Endpoints(
        dynamodb=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", LOCALSTACK_DEFAULTS["dynamodb"]),
        sqs=os.environ.get("AWS_ENDPOINT_URL_SQS", LOCALSTACK_DEFAULTS["sqs"]),
        s3=os.environ.get("AWS_ENDPOINT_URL_S3", LOCALSTACK_DEFAULTS["s3"]),
    )


def localstack_unavailable(endpoints: Endpoints) -> str | None:
    """Why the LocalStack stack can't be used, or None when it answers."""
    try:
        health = httpx.get(f"{endpoints.sqs}/_localstack/health", timeout=2).json()
        services = health.get("services", {})
        for name in ("s3", "sqs"):
            if services.get(name) not in ("available", "running"):
                return f"LocalStack {name} is {services.get(name)!r}"
        httpx.post(
            str(endpoints.dynamodb),
            headers={
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/"
                "dynamodb/aws4_request, SignedHeaders=host, Signature=x",
            },
            content="{}",
            timeout=2,
        ).raise_for_status()
    except (httpx.HTTPError, ValueError) as exc:
        return f"LocalStack stack not reachable ({exc}); start it with localstack/up"
    return None


def require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required substrate missing under CI: {reason}")
    pytest.skip(reason)


def unique_stack() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def settings_for(substrate: str, endpoints: Endpoints, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "stack": unique_stack(),
        "substrate": substrate,
        "profile": "test",
        "region": "us-east-1",
        "endpoint_url_dynamodb": endpoints.dynamodb,
        "endpoint_url_sqs": endpoints.sqs,
        "endpoint_url_s3": endpoints.s3,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
