"""The template as a security review reads it: tables that survive a mistaken delete, queues
and buckets encrypted and refusing plain HTTP, no secret value anywhere (the roles' access to
the secrets is with the other IAM facts, in ``test_template``)."""

from __future__ import annotations

from typing import Any

import pytest

from infra._secrets import ADMIN_TOKEN, CONTROL_PLANE_TOKEN, SIGNING_KEY
from infra.resources import StackDescription, describe
from infra.template import stack_template
from tests.unit.test_template import HOSTED, ORDERS, SECRET, STACK, Resolver, _of_type
from tpf.settings import Settings


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    stack: StackDescription = describe(
        Settings(stack=STACK, profile="default"), releases=[(ORDERS, "1.0.0")]
    )
    return stack_template(stack.settings, pipelines=HOSTED, release="1.0.0")


def test_every_table_survives_a_mistaken_delete_and_restores_to_any_second(
    template: dict[str, Any],
) -> None:
    tables = _of_type(template, "AWS::DynamoDB::Table")
    assert tables
    for id_, table in tables.items():
        p = table["Properties"]
        assert p["DeletionProtectionEnabled"] is True, id_
        assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, id_
        assert table["DeletionPolicy"] == "Retain", id_


def test_every_queue_is_encrypted_at_rest(template: dict[str, Any]) -> None:
    queues = _of_type(template, "AWS::SQS::Queue")
    assert queues
    for id_, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, id_


def test_every_bucket_is_encrypted_private_and_refuses_plain_http(
    template: dict[str, Any],
) -> None:
    resolve = Resolver(template)
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
        for p in _of_type(template, "AWS::S3::BucketPolicy").values()
    }
    buckets = _of_type(template, "AWS::S3::Bucket")
    assert set(policies) == set(buckets)
    for id_, bucket in buckets.items():
        p = bucket["Properties"]
        (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", id_
        assert all(p["PublicAccessBlockConfiguration"].values()), id_
        assert len(p["PublicAccessBlockConfiguration"]) == 4, id_
        assert p["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        (deny,) = policies[id_]["Statement"]
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        arn = resolve.arn(id_)
        assert [resolve(r) for r in deny["Resource"]] == [arn, f"{arn}/*"]


def test_every_queue_refuses_plain_http_in_its_one_policy(template: dict[str, Any]) -> None:
    resolve = Resolver(template)
    policies: dict[str, list[dict[str, Any]]] = {}
    for policy in _of_type(template, "AWS::SQS::QueuePolicy").values():
        (queue,) = policy["Properties"]["Queues"]
        assert queue["Ref"] not in policies, "a queue has one policy: a second would replace it"
        policies[queue["Ref"]] = policy["Properties"]["PolicyDocument"]["Statement"]
    queues = _of_type(template, "AWS::SQS::Queue")
    assert set(policies) == set(queues)
    for id_, statements in policies.items():
        (deny,) = [s for s in statements if s["Effect"] == "Deny"]
        assert (deny["Principal"], deny["Action"]) == ("*", "sqs:*")
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert [resolve(r) for r in deny["Resource"]] == [resolve.arn(id_)]


def test_the_template_carries_no_secret_value_only_generated_secrets(
    template: dict[str, Any],
) -> None:
    assert not [n for n, p in template["Parameters"].items() if p.get("NoEcho")]
    secrets = _of_type(template, SECRET)
    assert set(secrets) == {SIGNING_KEY, CONTROL_PLANE_TOKEN, ADMIN_TOKEN}
    for id_, secret in secrets.items():
        p = secret["Properties"]
        assert "SecretString" not in p, id_
        assert p["GenerateSecretString"]["PasswordLength"] >= 32, id_


def test_the_outputs_configure_the_coordinator_with_references_to_its_secrets(
    template: dict[str, Any],
) -> None:
    resolve = Resolver(template)
    outputs = template["Outputs"]
    for output, secret in (
        ("SigningKeyReference", SIGNING_KEY),
        ("ControlPlaneTokenReference", CONTROL_PLANE_TOKEN),
        ("AdminTokenReference", ADMIN_TOKEN),
    ):
        assert resolve(outputs[output]["Value"]) == f"secretsmanager:{resolve.arn(secret)}"
