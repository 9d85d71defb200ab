"""The CloudFormation template, deployed and run: CreateStack on moto's server reaches
CREATE_COMPLETE, the resources have the properties the template gives them, and a coordinator
and a poller worker configured only from the stack's outputs (``tpf infra env``, as the README's
walkthrough does) run each reference pipeline to SUCCEEDED.

Where moto's CloudFormation (5.2) falls short, and what this test does about it:

- It does not implement queue and bucket policies: it warns, creates nothing, and the first
  test records which types it skipped. Nor does it enforce IAM or encryption. checkov, cfn-lint
  and the template's IAM tests hold those (``tests/unit/test_template*.py``).
- It does not implement ``AWS::SecretsManager::Secret``; ``tests.e2e.moto_secrets`` gives it
  one, so that the outputs and the function's environment carry real ``secretsmanager:``
  references and the processes read their secrets as they would on AWS.
- It accepts and ignores some properties (``IGNORED_BY_MOTO``); the tests check that they are
  still ignored, and the run applies, from the template, the two it depends on.
- It invokes a Lambda function only through Docker, so a poller worker stands in for the
  deployed function, whose event source mappings are checked and then disabled (enabled,
  moto's SQS would hand each command to the function it cannot run).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shlex
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.restaurant_approval import PIPELINE_ID as RESTAURANT
from infra.resources import work_queue
from infra.template import render, stack_template
from tests.e2e import moto_secrets
from tests.e2e.test_cli import clean_env, tpf
from tests.e2e.test_csv_payments import expected_output, payments_file, wait_terminal
from tests.e2e.test_fleet import finished, pending_of, restaurant_order, submit
from tests.substrates import unique_stack
from tests.waiting import wait_until
from tests.workers import ORDER
from tpf.codec import encode_envelope
from tpf.loading import load_pipeline
from tpf.settings import Settings
from tpf.substrate import resolve_endpoints, sync_client
from tpfctl.embedded import EmbeddedSubstrate
from tpfctl.fleet import Fleet
from tpfctl.stack import (
    DEFAULT_PIPELINES,
    OwnedStack,
    StackSpec,
    free_port,
    register_all,
    wait_for_workers,
)
from tpfctl.uploads import upload_csv

RELEASE = "1.0.0"
ARTIFACTS = "tpf-artifacts"
ARTIFACT_KEY = f"tpf/worker-{RELEASE}.zip"
DEPLOYED = {
    "AWS::DynamoDB::Table": 5,
    "AWS::SQS::Queue": 16,
    "AWS::S3::Bucket": 4,
    "AWS::IAM::Role": 2,
    "AWS::Lambda::Function": 1,
    "AWS::Lambda::EventSourceMapping": 3,
    "AWS::SecretsManager::Secret": 3,
    "AWS::Logs::LogGroup": 1,
}
SKIPPED_BY_MOTO = {"AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"}
"""Resource types moto's CloudFormation does not implement: it warns and creates nothing."""
IGNORED_BY_MOTO = {
    "AWS::DynamoDB::Table": ("TimeToLiveSpecification", "PointInTimeRecoverySpecification"),
    "AWS::S3::Bucket": (
        "VersioningConfiguration",
        "LifecycleConfiguration",
        "NotificationConfiguration",
        "PublicAccessBlockConfiguration",
        "OwnershipControls",
    ),
}
"""Properties moto's CloudFormation accepts and does not apply (the scan checks them)."""
UNSUPPORTED = re.compile(r"Tried to parse (\S+) but it's not supported")

STOP_GRACE_S = 5.0
"""How long a member may drain on SIGTERM before it is killed."""

# Deploying takes seconds; starting three processes and running four executions (one waiting
# for a decision, one a file of payments through a provider) takes most of the rest.
pytestmark = [
    pytest.mark.timeout(240),
    # moto warns again of each skipped resource whenever it reads the stack (DescribeStacks,
    # ListStackResources); the fixture records the warnings of the creation itself.
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported:UserWarning"),
]


@dataclass
class Deployed:
    substrate: EmbeddedSubstrate
    settings: Settings
    """An operator's settings: the stack's name, AWS at moto's endpoint."""
    template: dict[str, Any]
    status: str
    outputs: dict[str, str]
    resources: dict[str, dict[str, Any]]
    """Logical id -> the stack's resource summary."""
    mappings: list[dict[str, Any]]
    """The worker's event source mappings as deployed, before the test disables them."""
    skipped: set[str]
    """Resource types moto said it does not implement, and skipped."""

    def client(self, service: str) -> Any:
        return sync_client(self.settings, service)

    def physical(self, logical_id: str) -> str:
        physical: str = self.resources[logical_id]["PhysicalResourceId"]
        return physical


def worker_package() -> bytes:
    """The function's code must exist in S3 for CreateFunction; it never runs here."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.write(Path(__file__).parents[2] / "worker" / "lambda_handler.py")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    moto_secrets.install()
    substrate = EmbeddedSubstrate.start()
    try:
        stack = unique_stack()
        settings = Settings(stack=stack, substrate="aws", endpoint_url=substrate.endpoint_url)
        hosted = {load_pipeline(p).id: p for p in DEFAULT_PIPELINES}
        template = stack_template(settings, pipelines=hosted, release=RELEASE)
        s3 = sync_client(settings, "s3")
        s3.create_bucket(Bucket=ARTIFACTS)
        s3.put_object(Bucket=ARTIFACTS, Key=ARTIFACT_KEY, Body=worker_package())
        cloudformation = sync_client(settings, "cloudformation")
        # moto creates the resources within the request, in its server's thread, and warns of
        # each one it skips: recorded here (the suite turns warnings into errors).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cloudformation.create_stack(
                StackName=stack,
                TemplateBody=render(template),
                Parameters=[
                    {"ParameterKey": "ArtifactBucket", "ParameterValue": ARTIFACTS},
                    {"ParameterKey": "ArtifactKey", "ParameterValue": ARTIFACT_KEY},
                ],
                Capabilities=["CAPABILITY_NAMED_IAM"],
            )
        skipped = {
            match.group(1)
            for warning in caught
            if (match := UNSUPPORTED.search(str(warning.message)))
        }

        def settled() -> dict[str, Any] | None:
            described: dict[str, Any] = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
            return None if described["StackStatus"].endswith("IN_PROGRESS") else described

        described = wait_until(settled, timeout=120, interval=0.2)
        summaries = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
        # moto also lists each resource it skipped, as a summary with every field blank.
        resources = {
            r["LogicalResourceId"]: r
            for page in summaries
            for r in page["StackResourceSummaries"]
            if r["LogicalResourceId"]
        }
        mappings = sync_client(settings, "lambda").list_event_source_mappings(
            FunctionName=resources["WorkerFunction"]["PhysicalResourceId"]
        )["EventSourceMappings"]
        yield Deployed(
            substrate=substrate,
            settings=settings,
            template=template,
            status=described["StackStatus"],
            outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
            resources=resources,
            mappings=mappings,
            skipped=skipped,
        )
    finally:
        substrate.stop()


def of_type(deployed: Deployed, resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type that the stack holds (logical id -> properties);
    those of conditions the defaults leave off (the coordinator's service) are not made."""
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in deployed.template["Resources"].items()
        if resource["Type"] == resource_type and logical_id in deployed.resources
    }


def test_the_stack_is_created_with_every_resource_moto_implements(deployed: Deployed) -> None:
    assert deployed.status == "CREATE_COMPLETE"
    created = Counter(r["ResourceType"] for r in deployed.resources.values())
    assert created == DEPLOYED
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in deployed.resources.values())
    # Every unconditional resource of the template is in the stack, or of a type moto skips;
    # the coordinator's instance profile is only made for EC2, which the defaults do not ask for.
    resources = deployed.template["Resources"]
    missing = {i for i, r in resources.items() if "Condition" not in r} - set(deployed.resources)
    assert {resources[i]["Type"] for i in missing} == SKIPPED_BY_MOTO == deployed.skipped
    assert "CoordinatorInstanceProfile" not in deployed.resources


def index_keys(indexes: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    return {index["IndexName"]: index["KeySchema"] for index in indexes}


def test_each_table_has_the_keys_indexes_and_protection_of_the_template(deployed: Deployed) -> None:
    dynamodb = deployed.client("dynamodb")
    for logical_id, wanted in of_type(deployed, "AWS::DynamoDB::Table").items():
        name = deployed.physical(logical_id)
        assert name == wanted["TableName"]
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == wanted["KeySchema"], name
        assert index_keys(table.get("GlobalSecondaryIndexes", [])) == index_keys(
            wanted.get("GlobalSecondaryIndexes", [])
        ), name
        assert table["BillingModeSummary"]["BillingMode"] == wanted["BillingMode"]
        assert table["DeletionProtectionEnabled"] is wanted["DeletionProtectionEnabled"] is True
        # Still left out by moto (IGNORED_BY_MOTO): enabled in the template, not on the table.
        if wanted.get("TimeToLiveSpecification", {}).get("Enabled"):
            ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_each_queue_has_its_visibility_retention_and_dead_letter_queue(
    deployed: Deployed,
) -> None:
    sqs = deployed.client("sqs")
    attributes = {
        logical_id: sqs.get_queue_attributes(
            QueueUrl=deployed.physical(logical_id), AttributeNames=["All"]
        )["Attributes"]
        for logical_id in of_type(deployed, "AWS::SQS::Queue")
    }
    for logical_id, wanted in of_type(deployed, "AWS::SQS::Queue").items():
        queue = attributes[logical_id]
        assert queue["QueueArn"].endswith(f":{wanted['QueueName']}")
        assert queue["MessageRetentionPeriod"] == str(wanted["MessageRetentionPeriod"])
        assert queue["SqsManagedSseEnabled"] == "true"
        if "RedrivePolicy" not in wanted:  # a dead-letter queue
            assert "RedrivePolicy" not in queue
            continue
        assert queue["VisibilityTimeout"] == str(wanted["VisibilityTimeout"])
        redrive = json.loads(queue["RedrivePolicy"])
        dead_letters = wanted["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert redrive == {
            "deadLetterTargetArn": attributes[dead_letters]["QueueArn"],
            "maxReceiveCount": wanted["RedrivePolicy"]["maxReceiveCount"],
        }


def test_each_bucket_is_encrypted_and_tagged(deployed: Deployed) -> None:
    s3 = deployed.client("s3")
    for logical_id, wanted in of_type(deployed, "AWS::S3::Bucket").items():
        name = deployed.physical(logical_id)
        assert name == wanted["BucketName"]
        encryption = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
        algorithm = encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        assert algorithm == "AES256"
        assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == wanted["Tags"]
        # Still left out by moto (IGNORED_BY_MOTO): the run applies versioning itself.
        assert wanted["VersioningConfiguration"] == {"Status": "Enabled"}
        assert "Status" not in s3.get_bucket_versioning(Bucket=name)


def test_the_roles_trust_the_services_that_run_each_role(deployed: Deployed) -> None:
    iam = deployed.client("iam")
    parameters = deployed.template["Parameters"]
    for logical_id, wanted in of_type(deployed, "AWS::IAM::Role").items():
        role = iam.get_role(RoleName=deployed.physical(logical_id))["Role"]
        service = wanted["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        if isinstance(service, dict):  # a parameter's Ref: deployed with its default
            service = parameters[service["Ref"]]["Default"]
        trust = role["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": service}], logical_id
        policies = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
        assert sorted(policies) == sorted(p["PolicyName"] for p in wanted["Policies"])


def test_the_worker_function_holds_references_to_its_secrets_never_their_values(
    deployed: Deployed,
) -> None:
    (wanted,) = of_type(deployed, "AWS::Lambda::Function").values()
    function = deployed.client("lambda").get_function_configuration(
        FunctionName=deployed.physical("WorkerFunction")
    )
    assert (function["Handler"], function["Runtime"]) == (wanted["Handler"], wanted["Runtime"])
    assert (function["Timeout"], function["MemorySize"]) == (
        wanted["Timeout"],
        wanted["MemorySize"],
    )
    variables = function["Environment"]["Variables"]
    assert variables["TPF_SIGNING_KEY"] == deployed.outputs["SigningKeyReference"]
    assert variables["TPF_PIPELINES"] == ",".join(DEFAULT_PIPELINES)
    assert (variables["TPF_SUBSTRATE"], variables["TPF_RELEASE"]) == ("aws", RELEASE)
    secrets = deployed.client("secretsmanager")
    values = {
        secrets.get_secret_value(SecretId=deployed.physical(i))["SecretString"]
        for i in of_type(deployed, "AWS::SecretsManager::Secret")
    }
    assert len(values) == 3 and all(len(v) == 64 for v in values)
    assert not values & set(variables.values())
    assert not values & set(deployed.outputs.values())


def test_each_work_queue_feeds_the_function_in_batches(deployed: Deployed) -> None:
    sqs = deployed.client("sqs")
    wanted = of_type(deployed, "AWS::Lambda::EventSourceMapping")
    queue_arns = {
        sqs.get_queue_attributes(
            QueueUrl=deployed.physical(m["EventSourceArn"]["Fn::GetAtt"][0]),
            AttributeNames=["QueueArn"],
        )["Attributes"]["QueueArn"]: m
        for m in wanted.values()
    }
    assert len(deployed.mappings) == len(wanted) == 3
    for mapping in deployed.mappings:
        want = queue_arns[mapping["EventSourceArn"]]
        assert mapping["BatchSize"] == want["BatchSize"]
        assert mapping["FunctionArn"].endswith(f":function:{deployed.physical('WorkerFunction')}")
        assert mapping["State"] == "Enabled"
    work_queues = {work_queue(load_pipeline(p).id, RELEASE) for p in DEFAULT_PIPELINES}
    assert {arn.rsplit(":", 1)[1] for arn in queue_arns} == {
        deployed.settings.resource(q) for q in work_queues
    }


# -- running the deployed stack ------------------------------------------------------------


def queue_arn(deployed: Deployed, logical_id: str) -> str:
    arn: str = deployed.client("sqs").get_queue_attributes(
        QueueUrl=deployed.physical(logical_id), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    return arn


def apply_what_moto_leaves_out(deployed: Deployed) -> None:
    """Apply, through the S3 API and from the template's own properties, the bucket properties
    moto's CloudFormation accepts and ignores that a run depends on: the inbox's notification
    (an upload starts its execution through it) and versioning (uploads carry version ids)."""
    s3 = deployed.client("s3")
    for logical_id, wanted in of_type(deployed, "AWS::S3::Bucket").items():
        name = deployed.physical(logical_id)
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration=wanted["VersioningConfiguration"]
        )
        queues = wanted.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
        if not queues:
            continue
        configurations: list[dict[str, Any]] = []
        for queue in queues:
            configuration = {
                "QueueArn": queue_arn(deployed, queue["Queue"]["Fn::GetAtt"][0]),
                "Events": [queue["Event"]],
            }
            if "Filter" in queue:
                configuration["Filter"] = {
                    "Key": {"FilterRules": queue["Filter"]["S3Key"]["Rules"]}
                }
            configurations.append(configuration)
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"QueueConfigurations": configurations}
        )


def exported(lines: str) -> dict[str, str]:
    """The variables of ``export NAME=value`` lines."""
    pairs = (shlex.split(line)[1].split("=", 1) for line in lines.splitlines() if line)
    return dict(pairs)


def secret_value(deployed: Deployed, reference: str) -> str:
    """The token behind a ``secretsmanager:`` reference, as an HTTP client reads it."""
    secret_id = reference.removeprefix("secretsmanager:")
    value: str = deployed.client("secretsmanager").get_secret_value(SecretId=secret_id)[
        "SecretString"
    ]
    return value


@pytest.fixture(scope="module")
def running(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedStack]:
    """A coordinator, a poller worker of the three reference pipelines and a payment provider,
    configured from the stack's outputs the way the README's walkthrough says."""
    apply_what_moto_leaves_out(deployed)
    lambda_ = deployed.client("lambda")
    for mapping in deployed.mappings:
        lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)

    workdir = tmp_path_factory.mktemp("deployed")
    # Where AWS is (moto's server) and the credentials come from the machine, as on AWS;
    # everything else from the stack.
    aws = {"AWS_ENDPOINT_URL": deployed.substrate.endpoint_url}
    printed = tpf("infra", "env", "--stack", deployed.settings.stack, env=clean_env(workdir, **aws))
    assert printed.returncode == 0, printed.stderr
    env = {**aws, **exported(printed.stdout)}
    assert env["TPF_SIGNING_KEY"] == deployed.outputs["SigningKeyReference"]
    settings = Settings(
        stack=env["TPF_STACK"],
        substrate="aws",
        region=env["TPF_REGION"],
        endpoint_url=deployed.substrate.endpoint_url,
    )
    # What `tpf register` does, without another process to start on a busy machine.
    pipelines = [load_pipeline(p) for p in DEFAULT_PIPELINES]
    asyncio.run(register_all(settings, pipelines, RELEASE))

    port = free_port()
    fleet = Fleet(env={**env, "TPF_API_PORT": str(port)}, workdir=workdir)
    fleet.add("coordinator", "coordinator")
    hosted = [arg for p in DEFAULT_PIPELINES for arg in ("--pipeline", p)]
    fleet.add("worker", "worker", *hosted, "--release", RELEASE)
    fleet.add("provider-mock", "provider-mock")
    stack = OwnedStack(
        spec=StackSpec(substrate="aws", stack=settings.stack, release=RELEASE, register=False),
        settings=settings,
        endpoints=resolve_endpoints(settings),
        # The tokens' values, for the test's own HTTP calls (members have only references).
        env={
            **env,
            "TPF_CONTROL_PLANE_TOKEN": secret_value(deployed, env["TPF_CONTROL_PLANE_TOKEN"]),
            "TPF_ADMIN_TOKEN": secret_value(deployed, env["TPF_ADMIN_TOKEN"]),
        },
        api_urls=[f"http://127.0.0.1:{port}"],
        fleet=fleet,
        embedded=None,
    )
    try:
        fleet.start_all()
        fleet.wait_ready(f"{stack.api_url}/q/health/ready", timeout=90)
        wait_for_workers(stack, [p.id for p in pipelines], RELEASE, timeout=90)
        yield stack
    finally:
        # The coordinator finishes its long polls (20 s with the deployed profile) before it
        # exits; this stack is thrown away, so nothing is lost by not waiting for them.
        fleet.stop_all(grace=STOP_GRACE_S)


@pytest.fixture
def api(running: OwnedStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{running.api_url}/tpf/control-plane/tenants/default",
        headers={"Authorization": f"Bearer {running.control_plane_token}"},
        timeout=10,
    ) as client:
        yield client


def test_an_order_runs_to_succeeded_on_the_deployed_stack(api: httpx.Client) -> None:
    response = submit(api, "org.example.orders", ORDER)
    assert response.status_code == 200, response.text
    assert finished(api, response.json()["executionId"], timeout=60)["status"] == "SUCCEEDED"


def test_a_restaurant_order_is_approved_to_succeeded_on_the_deployed_stack(
    api: httpx.Client,
) -> None:
    execution_id = submit(api, RESTAURANT, restaurant_order()).json()["executionId"]
    interaction = pending_of(api, execution_id)
    decision = {
        "accepted": {
            "orderId": interaction["requestPayload"]["orderId"],
            "decidedAt": "2026-12-01T12:00:00Z",
        }
    }
    answered = api.post(
        "/interactions/complete",
        json={
            "interactionId": interaction["interactionId"],
            "responsePayload": encode_envelope("x", decision),
            "actor": "chef",
        },
    )
    assert answered.status_code == 200, answered.text
    assert finished(api, execution_id, timeout=60)["status"] == "SUCCEEDED"


def test_a_payments_file_is_paid_to_succeeded_on_the_deployed_stack(running: OwnedStack) -> None:
    data = payments_file(20, prefix="CFN")
    execution_id = upload_csv(running.settings, "incoming/deployed.csv", data).execution_id
    ended = wait_terminal(running, execution_id, timeout=120)
    assert ended["status"] == "SUCCEEDED", ended
    report = ended["result"]
    s3 = sync_client(running.settings, "s3")
    written = s3.get_object(Bucket=report["outputBucket"], Key=report["outputKey"])["Body"].read()
    assert written == expected_output(data)
