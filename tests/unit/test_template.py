"""The CloudFormation template: the provisioner's resources, a deployable worker, least privilege.

IAM facts are checked on the policy documents themselves by a small evaluator (an Allow whose
action and resource patterns match, and no matching Deny), after resolving the intrinsic
functions the template uses into the ARNs CloudFormation would give them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from infra import _buckets
from infra._secrets import ADMIN_TOKEN, CONTROL_PLANE_TOKEN, SIGNING_KEY
from infra.resources import StackDescription, describe, work_queue
from infra.template import (
    COORDINATOR_ROLE,
    HANDLER,
    VISIBILITY_PER_FUNCTION_TIMEOUT,
    WORKER_FUNCTION,
    WORKER_ROLE,
    logical_id,
    render,
    stack_template,
    work_event_source,
)
from tpf.errors import ConfigurationError
from tpf.settings import PROFILES, Settings

ACCOUNT, REGION, PARTITION = "123456789012", "eu-west-1", "aws"
PSEUDO_PARAMETERS = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION}
DEPLOYERS_SECRETS = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret"
PARAMETER_VALUES = {
    "ArtifactBucket": "artifacts",
    "ArtifactKey": "worker.zip",
    "Pipelines": "examples.orders:orders",
    "CoordinatorService": "ecs-tasks.amazonaws.com",
    # The deployer's own secrets: the Fargate coordinator's certificate and key.
    "CoordinatorTlsCertificate": f"{DEPLOYERS_SECRETS}:tls-crt-AbCdEf",
    "CoordinatorTlsKey": f"{DEPLOYERS_SECRETS}:tls-key-AbCdEf",
}
STACK = "tmpl"
ORDERS = "org.example.orders"
HOSTED = {ORDERS: "examples.orders:orders"}
RELEASE_QUEUE = work_queue(ORDERS, "1.0.0")
WORK_EVENT_SOURCE = work_event_source(RELEASE_QUEUE)
RECORD_TABLES = ("executions", "awaits", "registry")
SECRET = "AWS::SecretsManager::Secret"
ITEM_WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
)


@pytest.fixture(scope="module")
def stack() -> StackDescription:
    return describe(Settings(stack=STACK, profile="default"), releases=[(ORDERS, "1.0.0")])


@pytest.fixture(scope="module")
def template(stack: StackDescription) -> dict[str, Any]:
    return stack_template(stack.settings, pipelines=HOSTED, release="1.0.0")


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {id_: r for id_, r in template["Resources"].items() if r["Type"] == kind}


# -- resolving intrinsic functions ---------------------------------------------------------


ARNS = {
    "AWS::DynamoDB::Table": (
        "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
        "TableName",
    ),
    "AWS::SQS::Queue": ("arn:{partition}:sqs:{region}:{account}:{name}", "QueueName"),
    "AWS::S3::Bucket": ("arn:{partition}:s3:::{name}", "BucketName"),
    "AWS::Logs::LogGroup": (
        "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
        "LogGroupName",
    ),
    "AWS::Lambda::Function": (
        "arn:{partition}:lambda:{region}:{account}:function:{name}",
        "FunctionName",
    ),
}
"""ARN pattern (as ``Fn::GetAtt <id>.Arn`` gives it) and the property holding the name."""
SECRET_ARN = "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"
"""A secret's ``Ref``; CloudFormation names an unnamed secret after its logical id."""


@dataclass(frozen=True)
class Resolver:
    """Turns the template's ``Ref``, ``Fn::GetAtt`` and ``Fn::Sub`` into concrete strings."""

    template: dict[str, Any]

    def arn(self, logical_id: str) -> str:
        resource = self.template["Resources"][logical_id]
        if resource["Type"] == "AWS::SecretsManager::Secret":
            name = f"{logical_id}-x1y2z3"
            return SECRET_ARN.format(partition=PARTITION, region=REGION, account=ACCOUNT, name=name)
        pattern, name_property = ARNS[resource["Type"]]
        name = resource["Properties"][name_property]
        return pattern.format(partition=PARTITION, region=REGION, account=ACCOUNT, name=name)

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        ((function, argument),) = value.items()
        if function == "Ref":
            if argument in self.template["Resources"]:
                return self.arn(argument)  # the resources referred to give their ARN
            return {**PSEUDO_PARAMETERS, **PARAMETER_VALUES}[argument]
        if function == "Fn::GetAtt":
            target, attribute = argument
            assert attribute == "Arn", attribute
            return self.arn(target)
        if function == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._variable(m[1]), argument)
        raise AssertionError(f"the resolver does not know {function}")

    def _variable(self, name: str) -> str:
        if name.endswith(".Arn"):
            return self.arn(name.removesuffix(".Arn"))
        if name in self.template["Resources"]:
            return self.arn(name)
        return {**PSEUDO_PARAMETERS, **PARAMETER_VALUES}[name]


# -- evaluating policies -------------------------------------------------------------------


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Policy:
    statements: list[dict[str, Any]]
    """Statements with resolved resources."""

    def allows(self, action: str, resource: str) -> bool:
        effects = {
            s["Effect"]
            for s in self.statements
            # Action names are case-insensitive in IAM, resource ARNs are not.
            if any(fnmatchcase(action.lower(), a.lower()) for a in _listed(s["Action"]))
            and any(fnmatchcase(resource, r) for r in s["Resource"])
        }
        return "Allow" in effects and "Deny" not in effects


def _policy(template: dict[str, Any], role: str) -> Policy:
    resolve = Resolver(template)
    statements = [
        {**statement, "Resource": [resolve(r) for r in _listed(statement["Resource"])]}
        for policy in template["Resources"][role]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    return Policy(statements)


@pytest.fixture(scope="module")
def worker(template: dict[str, Any]) -> Policy:
    return _policy(template, WORKER_ROLE)


@pytest.fixture(scope="module")
def coordinator(template: dict[str, Any]) -> Policy:
    return _policy(template, COORDINATOR_ROLE)


def _arn(template: dict[str, Any], kind: str, name: str, suffix: str = "") -> str:
    return Resolver(template).arn(logical_id(kind, name)) + suffix


def test_the_evaluator_lets_an_explicit_deny_win_and_matches_wildcards() -> None:
    policy = Policy(
        [
            {"Effect": "Allow", "Action": "sqs:*", "Resource": ["arn:aws:sqs:*:*:a-*"]},
            {"Effect": "Deny", "Action": ["sqs:DeleteMessage"], "Resource": ["arn:aws:sqs:*"]},
        ]
    )
    assert policy.allows("sqs:SendMessage", "arn:aws:sqs:r:1:a-work")
    assert not policy.allows("sqs:SendMessage", "arn:aws:sqs:r:1:b-work")
    assert not policy.allows("sqs:DeleteMessage", "arn:aws:sqs:r:1:a-work")
    assert not policy.allows("s3:GetObject", "arn:aws:sqs:r:1:a-work")


# -- the resources are the provisioner's ---------------------------------------------------


def test_the_template_declares_exactly_the_provisioners_tables_queues_and_buckets(
    stack: StackDescription, template: dict[str, Any]
) -> None:
    def names(kind: str, name_property: str) -> list[str]:
        return sorted(r["Properties"][name_property] for r in _of_type(template, kind).values())

    assert names("AWS::DynamoDB::Table", "TableName") == sorted(
        stack.physical(t.name) for t in stack.tables
    )
    assert names("AWS::SQS::Queue", "QueueName") == sorted(
        stack.physical(name) for q in stack.queues for name in (q.name, q.dead_letter_name)
    )
    assert names("AWS::S3::Bucket", "BucketName") == sorted(
        stack.physical(b.name) for b in stack.buckets
    )


def test_every_table_has_its_keys_indexes_ttl_and_on_demand_billing(
    stack: StackDescription, template: dict[str, Any]
) -> None:
    for table in stack.tables:
        p = template["Resources"][logical_id("table", table.name)]["Properties"]
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["KeySchema"][0] == {"AttributeName": table.partition_key.name, "KeyType": "HASH"}
        assert len(p["KeySchema"]) == (2 if table.sort_key else 1)
        assert p["TimeToLiveSpecification"] == {
            "AttributeName": table.ttl_attribute,
            "Enabled": True,
        }
        indexes = {i["IndexName"]: i for i in p.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {i.name for i in table.indexes}, table.name
        for index in table.indexes:
            projection = indexes[index.name]["Projection"]
            if isinstance(index.projection, tuple):
                assert projection == {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(index.projection),
                }
            else:
                assert projection == {"ProjectionType": index.projection}


def test_every_queue_redrives_to_its_own_dead_letter_queue_with_the_declared_timings(
    stack: StackDescription, template: dict[str, Any]
) -> None:
    resources = template["Resources"]
    for queue in stack.queues:
        p = resources[logical_id("queue", queue.name)]["Properties"]
        dead_letters = resources[logical_id("queue", queue.dead_letter_name)]["Properties"]
        assert p["RedrivePolicy"] == {
            "deadLetterTargetArn": {
                "Fn::GetAtt": [logical_id("queue", queue.dead_letter_name), "Arn"]
            },
            "maxReceiveCount": queue.max_receive_count,
        }
        assert p["VisibilityTimeout"] == queue.visibility_timeout.total_seconds()
        assert p["MessageRetentionPeriod"] == queue.retention.total_seconds()
        assert dead_letters["MessageRetentionPeriod"] == queue.dead_letter_retention.total_seconds()
        assert "RedrivePolicy" not in dead_letters


def test_buckets_expire_the_inbox_keeps_versions_and_notifies_ingest_once_s3_may_send_there(
    stack: StackDescription, template: dict[str, Any]
) -> None:
    resources = template["Resources"]
    for bucket in stack.buckets:
        p = resources[logical_id("bucket", bucket.name)]["Properties"]
        days = [r["ExpirationInDays"] for r in p.get("LifecycleConfiguration", {}).get("Rules", [])]
        assert days == ([bucket.expire_after.days] if bucket.expire_after else []), bucket.name
        # Deployed, every bucket keeps versions; an old one expires as a current one would.
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}, bucket.name
        for rule in p.get("LifecycleConfiguration", {}).get("Rules", []):
            noncurrent = rule["NoncurrentVersionExpiration"]
            assert noncurrent == {"NoncurrentDays": rule["ExpirationInDays"]}
    inbox = resources[logical_id("bucket", "inbox")]
    (target,) = inbox["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert target == {
        "Event": _buckets.OBJECT_CREATED,
        "Queue": {"Fn::GetAtt": [logical_id("queue", "ingest"), "Arn"]},
        "Filter": {"S3Key": {"Rules": [{"Name": "suffix", "Value": ".csv"}]}},
    }
    (policy_id,) = inbox["DependsOn"]
    queue_policy = resources[policy_id]
    assert queue_policy["Type"] == "AWS::SQS::QueuePolicy"
    assert queue_policy["Properties"]["Queues"] == [{"Ref": logical_id("queue", "ingest")}]
    (statement,) = [
        s
        for s in queue_policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]
    resolve = Resolver(template)
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert resolve(statement["Resource"]) == _arn(template, "queue", "ingest")
    condition = statement["Condition"]
    assert [resolve(a) for a in condition["ArnLike"]["aws:SourceArn"]] == [
        _arn(template, "bucket", "inbox")
    ]
    assert resolve(condition["StringEquals"]["aws:SourceAccount"]) == ACCOUNT
    assert (
        "NotificationConfiguration" not in resources[logical_id("bucket", "outbox")]["Properties"]
    )


# -- the worker ----------------------------------------------------------------------------


def test_the_worker_function_runs_the_lambda_handler_from_the_artifact_parameters(
    template: dict[str, Any],
) -> None:
    p = template["Resources"][WORKER_FUNCTION]["Properties"]
    assert p["Handler"] == HANDLER == "worker.lambda_handler.handler"
    assert p["Runtime"] in ("python3.11", "python3.12")
    assert p["Code"] == {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Ref": "ArtifactKey"}}
    assert {"ArtifactBucket", "ArtifactKey"} <= set(template["Parameters"])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_work_queue_hides_a_message_for_at_least_six_function_timeouts(profile: str) -> None:
    settings = Settings(stack=STACK, profile=profile)  # type: ignore[arg-type]
    stack = describe(settings, releases=[(ORDERS, "1.0.0")])
    visibility = stack.queue(RELEASE_QUEUE).visibility_timeout
    visibility_s = visibility.total_seconds()
    if visibility_s < VISIBILITY_PER_FUNCTION_TIMEOUT:
        with pytest.raises(ConfigurationError, match="too short for a Lambda worker"):
            stack_template(settings, pipelines=HOSTED)
        return
    resources = stack_template(settings, pipelines=HOSTED)["Resources"]
    timeout = resources[WORKER_FUNCTION]["Properties"]["Timeout"]
    assert timeout >= 1
    queue = resources[logical_id("queue", RELEASE_QUEUE)]
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * timeout


def test_the_release_work_queue_feeds_the_worker_and_a_failed_item_fails_alone(
    template: dict[str, Any],
) -> None:
    p = template["Resources"][WORK_EVENT_SOURCE]["Properties"]
    assert p["EventSourceArn"] == {"Fn::GetAtt": [logical_id("queue", RELEASE_QUEUE), "Arn"]}
    assert p["FunctionName"] == {"Ref": WORKER_FUNCTION}
    assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= p["BatchSize"] <= 10


def test_the_worker_environment_configures_settings_for_this_stack(
    stack: StackDescription, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("TPF_")]:
        monkeypatch.delenv(name)
    resolve = Resolver(template)
    variables = template["Resources"][WORKER_FUNCTION]["Properties"]["Environment"]["Variables"]
    for name, value in variables.items():
        monkeypatch.setenv(name, resolve(value))

    seen = Settings()

    assert (seen.stack, seen.region, seen.substrate) == (STACK, REGION, "aws")
    assert [seen.resource(t.name) for t in stack.tables] == [
        stack.physical(t.name) for t in stack.tables
    ]
    signing_secret = Resolver(template).arn(SIGNING_KEY)
    assert seen.signing_key == f"secretsmanager:{signing_secret}"
    # The reference is all the function is given: no variable holds a secret.
    assert not {"TPF_SIGNING_SECRET", "TPF_WORKER_SECRET"} & set(variables)
    assert variables["TPF_RELEASE"] == "1.0.0"


def test_the_release_is_carried_into_the_function_and_a_bad_one_is_refused(
    template: dict[str, Any],
) -> None:
    p = template["Resources"][WORKER_FUNCTION]["Properties"]
    assert {"Key": "tpf:release", "Value": "1.0.0"} in p["Tags"]
    assert "release 1.0.0" in p["Description"]
    other = stack_template(
        Settings(stack=STACK, profile="default"), pipelines=HOSTED, release="2.0.0-rc.1"
    )
    variables = other["Resources"][WORKER_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["TPF_RELEASE"] == "2.0.0-rc.1"
    queue = work_queue(ORDERS, "2.0.0-rc.1")
    mapping = other["Resources"][work_event_source(queue)]["Properties"]
    assert mapping["EventSourceArn"]["Fn::GetAtt"][0] == logical_id("queue", queue)
    with pytest.raises(ConfigurationError, match="not a version"):
        stack_template(Settings(stack=STACK, profile="default"), pipelines=HOSTED, release="1.0 f")


# -- least privilege -----------------------------------------------------------------------


@pytest.mark.parametrize("table", RECORD_TABLES)
@pytest.mark.parametrize("action", ITEM_WRITES)
def test_a_worker_cannot_change_items_of_the_record_tables(
    template: dict[str, Any], worker: Policy, table: str, action: str
) -> None:
    assert not worker.allows(action, _arn(template, "table", table))


def test_a_worker_reads_the_registry_and_reads_and_writes_payloads(
    template: dict[str, Any], worker: Policy
) -> None:
    assert worker.allows("dynamodb:GetItem", _arn(template, "table", "registry"))
    for action in ("dynamodb:GetItem", "dynamodb:PutItem"):
        assert worker.allows(action, _arn(template, "table", "payloads"))
    for action in ("s3:GetObject", "s3:PutObject"):
        assert worker.allows(action, _arn(template, "bucket", "payloads", "/t/e/p"))
    # Reading its command's record is how a worker refuses a replayed command unrun.
    assert worker.allows("dynamodb:GetItem", _arn(template, "table", "executions"))


def test_a_worker_reads_uploads_and_writes_results_but_not_the_other_way(
    template: dict[str, Any], worker: Policy
) -> None:
    assert worker.allows("s3:GetObject", _arn(template, "bucket", "inbox", "/a.csv"))
    assert worker.allows("s3:PutObject", _arn(template, "bucket", "outbox", "/results/a.csv"))
    assert not worker.allows("s3:PutObject", _arn(template, "bucket", "inbox", "/a.csv"))
    assert not worker.allows("s3:DeleteObject", _arn(template, "bucket", "inbox", "/a.csv"))
    assert not worker.allows("s3:GetObject", _arn(template, "bucket", "releases", "/r.zip"))


def test_a_worker_consumes_work_and_sends_results_and_nothing_else_on_sqs(
    template: dict[str, Any], worker: Policy
) -> None:
    work, results = _arn(template, "queue", RELEASE_QUEUE), _arn(template, "queue", "results")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert worker.allows(action, work)
        assert not worker.allows(action, results)
    assert worker.allows("sqs:SendMessage", results)
    # A worker that could send commands could skip the coordinator's signing and fencing.
    assert not worker.allows("sqs:SendMessage", work)
    assert not worker.allows("sqs:SendMessage", _arn(template, "queue", "dead-letters"))


def test_a_worker_writes_only_its_own_logs(template: dict[str, Any], worker: Policy) -> None:
    group = template["Resources"]["WorkerLogGroup"]["Properties"]["LogGroupName"]
    stream = f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2024/x"
    assert worker.allows("logs:PutLogEvents", stream)
    assert not worker.allows("logs:PutLogEvents", stream.replace(group, "/aws/lambda/other"))


def test_the_coordinator_updates_executions_but_cannot_invoke_the_worker(
    template: dict[str, Any], coordinator: Policy
) -> None:
    executions = _arn(template, "table", "executions")
    assert coordinator.allows("dynamodb:UpdateItem", executions)
    assert coordinator.allows("dynamodb:Query", f"{executions}/index/due")
    function = Resolver(template).arn(WORKER_FUNCTION)
    for target in (function, f"{function}:live"):
        assert not coordinator.allows("lambda:InvokeFunction", target)


def test_the_coordinator_dispatches_work_and_consumes_results(
    template: dict[str, Any], coordinator: Policy
) -> None:
    work, results = _arn(template, "queue", RELEASE_QUEUE), _arn(template, "queue", "results")
    assert coordinator.allows("sqs:SendMessage", work)
    assert coordinator.allows("sqs:ReceiveMessage", results)
    assert coordinator.allows("sqs:ReceiveMessage", _arn(template, "queue", "ingest"))
    assert not coordinator.allows("sqs:ReceiveMessage", work)
    assert coordinator.allows("s3:GetObject", _arn(template, "bucket", "inbox", "/u/a.csv"))


def test_the_coordinator_creates_and_retires_release_queues_of_its_stack_only(
    template: dict[str, Any], coordinator: Policy
) -> None:
    later = f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{STACK}-{work_queue(ORDERS, '2.0.0')}"
    for action in ("sqs:CreateQueue", "sqs:SendMessage", "sqs:DeleteQueue"):
        assert coordinator.allows(action, later)
        assert coordinator.allows(action, f"{later}-dlq")
    assert not coordinator.allows("sqs:DeleteQueue", _arn(template, "queue", "results"))
    assert not coordinator.allows("sqs:CreateQueue", later.replace(f"{STACK}-", "other-"))
    assert not coordinator.allows("sqs:ReceiveMessage", later)


def test_the_coordinator_may_read_but_not_change_event_source_mappings(
    coordinator: Policy,
) -> None:
    mapping = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:event-source-mapping:1234-abcd"
    assert coordinator.allows("lambda:GetEventSourceMapping", mapping)
    for action in ("lambda:UpdateEventSourceMapping", "lambda:DeleteEventSourceMapping"):
        assert not coordinator.allows(action, mapping)


def _policy_documents(template: dict[str, Any]) -> list[dict[str, Any]]:
    documents = []
    for resource in template["Resources"].values():
        p = resource["Properties"]
        documents += [policy["PolicyDocument"] for policy in p.get("Policies", [])]
        if "PolicyDocument" in p:
            documents.append(p["PolicyDocument"])
    return documents


NO_RESOURCE_LEVEL_PERMISSION = {
    "ReadWorkerMappings": ("lambda:GetEventSourceMapping", "lambda:ListEventSourceMappings"),
    "GetRegistryToken": ("ecr:GetAuthorizationToken",),
}
"""Read-only grants AWS gives no resource-level permission for: their resource must be ``*``."""


def test_the_grants_without_a_resource_are_read_only_and_only_those(
    template: dict[str, Any],
) -> None:
    statements = [s for d in _policy_documents(template) for s in d["Statement"]]
    unscoped = {s["Sid"]: tuple(s["Action"]) for s in statements if s.get("Resource") == ["*"]}
    assert unscoped == NO_RESOURCE_LEVEL_PERMISSION


def test_no_statement_grants_every_action_or_every_resource(template: dict[str, Any]) -> None:
    resolve = Resolver(template)
    statements = [s for d in _policy_documents(template) for s in d["Statement"]]
    assert len(statements) > 10
    # A Deny of everything is how a bucket refuses plain HTTP; only grants must be narrow.
    for statement in [s for s in statements if s["Effect"] == "Allow"]:
        if statement["Sid"] in NO_RESOURCE_LEVEL_PERMISSION:
            continue
        for action in _listed(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), statement["Sid"]
        for resource in _listed(statement["Resource"]):
            assert resolve(resource) != "*", statement["Sid"]


def test_every_role_grant_names_a_resource_of_this_stack(
    template: dict[str, Any], worker: Policy, coordinator: Policy
) -> None:
    secrets = {Resolver(template).arn(id_) for id_ in _of_type(template, SECRET)}
    for policy in (worker, coordinator):
        for statement in policy.statements:
            if statement["Sid"] == "ReadWorkerMappings":
                continue  # no resource-level permission; read-only, tested above
            for resource in statement["Resource"]:
                own_secret = resource in secrets
                assert own_secret or f"{STACK}-" in resource, (statement["Sid"], resource)


# -- the template as a whole ---------------------------------------------------------------


def test_the_outputs_give_the_coordinator_every_name_url_and_arn(
    stack: StackDescription, template: dict[str, Any]
) -> None:
    outputs = template["Outputs"]
    assert outputs["CoordinatorRoleArn"]["Value"] == {"Fn::GetAtt": [COORDINATOR_ROLE, "Arn"]}
    assert outputs["Stack"]["Value"] == STACK
    expected = [f"{logical_id('table', t.name)}{a}" for t in stack.tables for a in ("Name", "Arn")]
    expected += [
        f"{logical_id('queue', name)}{a}"
        for q in stack.queues
        for name in (q.name, q.dead_letter_name)
        for a in ("Name", "Url", "Arn")
    ]
    expected += [
        f"{logical_id('bucket', b.name)}{a}" for b in stack.buckets for a in ("Name", "Arn")
    ]
    assert set(expected) <= set(outputs)


def test_cfn_lint_finds_nothing_to_report(template: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text(render(template))

    # Informational checks too: stateful resources carry explicit deletion policies.
    matches = lint_file(path, ManualArgs(include_checks=["I"], regions=["us-east-1", REGION]))

    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []


# -- secrets ---------------------------------------------------------------------------------


def test_each_role_reads_exactly_the_secrets_it_uses(
    template: dict[str, Any], worker: Policy, coordinator: Policy
) -> None:
    resolve = Resolver(template)
    read = "secretsmanager:GetSecretValue"
    signing, control, admin = (
        resolve.arn(s) for s in (SIGNING_KEY, CONTROL_PLANE_TOKEN, ADMIN_TOKEN)
    )
    assert worker.allows(read, signing)
    assert not worker.allows(read, control) and not worker.allows(read, admin)
    for secret in (signing, control, admin):
        assert coordinator.allows(read, secret)
    other = signing.replace(SIGNING_KEY, "SomeoneElsesSecret")
    assert not worker.allows(read, other) and not coordinator.allows(read, other)
