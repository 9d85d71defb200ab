"""The template's Fargate coordinator deployed by CloudFormation on moto's server: with an image,
VPC and subnets the stack runs a service of two tasks defined as the template says; with the
defaults it has no ECS resource and no output of one."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from infra import _coordinator_service as service
from infra.template import render, stack_template
from tests.substrates import unique_stack
from tpf.settings import Settings
from tpfctl.embedded import EmbeddedSubstrate

REGION = "us-east-1"
ARTIFACTS = "tpf-deploy-artifacts"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tpf-coordinator:1.0.0"
HOSTED = {"org.example.orders": "examples.orders:orders"}

# moto's CloudFormation warns about the resource types it does not model (policies, secrets).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:moto.*")


def _client(server: EmbeddedSubstrate, name: str) -> Any:
    return boto3.client(name, region_name=REGION, endpoint_url=server.endpoint_url)


def _deploy(server: EmbeddedSubstrate, parameters: dict[str, str]) -> dict[str, Any]:
    s3 = _client(server, "s3")
    s3.create_bucket(Bucket=ARTIFACTS)
    s3.put_object(Bucket=ARTIFACTS, Key="worker.zip", Body=b"PK")
    settings = Settings(stack=unique_stack(), region=REGION)
    template = stack_template(settings, pipelines=HOSTED)
    given = {"ArtifactBucket": ARTIFACTS, "ArtifactKey": "worker.zip", **parameters}
    cloudformation = _client(server, "cloudformation")
    cloudformation.create_stack(
        StackName=settings.stack,
        TemplateBody=render(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    (stack,) = cloudformation.describe_stacks(StackName=settings.stack)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_with_an_image_the_stack_runs_two_coordinator_tasks(moto_server: EmbeddedSubstrate) -> None:
    ec2 = _client(moto_server, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]

    outputs = _deploy(
        moto_server,
        {"CoordinatorImage": IMAGE, "CoordinatorVpc": vpc, "CoordinatorSubnets": subnet},
    )

    ecs = _client(moto_server, "ecs")
    cluster = outputs["CoordinatorClusterName"]
    (running,) = ecs.describe_services(
        cluster=cluster, services=[outputs["CoordinatorFargateServiceName"]]
    )["services"]
    assert running["desiredCount"] == service.REPLICAS
    task = ecs.describe_task_definition(taskDefinition=running["taskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["image"] == IMAGE
    assert container["healthCheck"]["command"] == service.HEALTH_CHECK
    logs = _client(moto_server, "logs")
    (group,) = logs.describe_log_groups(logGroupNamePrefix=outputs["CoordinatorLogGroupName"])[
        "logGroups"
    ]
    assert group["retentionInDays"] > 0


def test_with_the_defaults_the_stack_has_no_ecs_resource(moto_server: EmbeddedSubstrate) -> None:
    outputs = _deploy(moto_server, {})

    assert not set(service.outputs()) & set(outputs)
    assert "CoordinatorRoleArn" in outputs
