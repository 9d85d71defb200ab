"""The stack as an AWS CloudFormation template, read from the same description ``tpf infra up``
provisions (``infra.resources.describe``), plus what only a deployment has: the Lambda worker
fed by the work queue, least-privilege roles for it and the coordinator (``infra.iam``), the
secrets both read at start (``infra._secrets``), and what a security review asks of every
resource (``infra._hardening``: checkov finds nothing it does not explain).

Physical names are the provisioner's (``<stack>-<name>``), so a coordinator configured with
``TPF_STACK`` finds a deployed stack exactly as it finds a provisioned one. The coordinator runs
on whatever long-running compute the user has: it gets a role and, as Outputs, every name, URL
and ARN it needs; or, given an image, the template runs it as a Fargate service
(``infra._coordinator_service``, nothing of which exists without that parameter).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from infra import _buckets, _coordinator_service, _hardening, _secrets, _tables, iam
from infra.resources import (
    LAMBDA_VISIBILITY_FACTOR,
    Queue,
    StackDescription,
    describe,
    work_queue,
)
from tpf.errors import ConfigurationError
from tpf.settings import Settings

FORMAT_VERSION = "2010-09-09"
RUNTIME = "python3.12"
HANDLER = "worker.lambda_handler.handler"
MEMORY_MB = 512
LOG_RETENTION_DAYS = 30
SQS_MAX_BATCH = 10
"""The largest batch an SQS event source delivers without a batching window."""
VISIBILITY_PER_FUNCTION_TIMEOUT = LAMBDA_VISIBILITY_FACTOR
"""AWS's rule for a queue that feeds a function: visibility at least 6x the function's timeout,
so the retries of a throttled batch finish before SQS hands its messages out again."""
RELEASE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
"""Versions usable in an environment variable and a tag value (e.g. ``1.0.0``, ``2.1.0-rc.1``)."""

WORKER_FUNCTION = "WorkerFunction"
WORKER_LOG_GROUP = "WorkerLogGroup"
WORKER_ROLE = "WorkerRole"
COORDINATOR_ROLE = "CoordinatorRole"
COORDINATOR_INSTANCE_PROFILE = "CoordinatorInstanceProfile"
ON_EC2 = "CoordinatorOnEc2"
COORDINATOR_SERVICES = (
    "ecs-tasks.amazonaws.com",
    "ec2.amazonaws.com",
    "tasks.apprunner.amazonaws.com",
)

PARAMETERS: dict[str, dict[str, Any]] = {
    "ArtifactBucket": {
        "Type": "String",
        "Description": "S3 bucket holding the worker's deployment package (a .zip)",
    },
    "ArtifactKey": {"Type": "String", "Description": "Key of the worker's deployment package"},
    "Pipelines": {
        "Type": "String",
        "Description": "Comma-separated module:attribute references of the pipelines to run",
        "AllowedPattern": r"^[\w.]+(:\w+)?(,[\w.]+(:\w+)?)*$",
    },
    "CoordinatorService": {
        "Type": "String",
        "Default": COORDINATOR_SERVICES[0],
        "AllowedValues": list(COORDINATOR_SERVICES),
        "Description": "The AWS service whose compute runs the coordinator and assumes its role",
    },
}

# Deleting or replacing the CloudFormation stack leaves executions, payloads and results in
# place (``tpf infra down`` removes them on purpose). Queued messages may go: a lost command is
# dispatched again from its execution record when its deadline passes.
KEPT = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
DISPOSABLE = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}

_SUFFIXES = {"table": "Table", "queue": "Queue", "bucket": "Bucket"}


def logical_id(kind: str, name: str) -> str:
    """``("queue", "await-requests")`` -> ``AwaitRequestsQueue``."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", name)) + _SUFFIXES[kind]


def function_timeout(queue: Queue) -> int:
    """Seconds the worker function may run: the most its queue's visibility allows."""
    visibility = _seconds(queue.visibility_timeout)
    if visibility < VISIBILITY_PER_FUNCTION_TIMEOUT:
        raise ConfigurationError(
            f"the {queue.name} queue's visibility timeout ({visibility} s) is too short for a "
            f"Lambda worker: it must be at least {VISIBILITY_PER_FUNCTION_TIMEOUT} s "
            "(use the default profile)"
        )
    return visibility // VISIBILITY_PER_FUNCTION_TIMEOUT


def stack_template(
    settings: Settings, *, pipelines: Mapping[str, str], release: str | None = None
) -> dict[str, Any]:
    """The whole stack as a CloudFormation template (a JSON-able dict): the Lambda worker of
    ``release`` (the configured one when None) and the work queue of each of ``pipelines``
    (pipeline id -> ``module:attribute``) at that release, each feeding the worker."""
    release = release or settings.release
    if not RELEASE.match(release):
        raise ConfigurationError(f"release {release!r} is not a version such as 1.0.0")
    if not pipelines:
        raise ConfigurationError("a template needs at least one pipeline for its worker")
    stack = describe(settings, releases=[(p, release) for p in pipelines])
    resources = {**_table_resources(stack), **_queue_resources(stack), **_bucket_resources(stack)}
    resources |= _secrets.resources(settings.stack, _tags(stack))
    resources |= _worker(stack, release, list(pipelines))
    resources[COORDINATOR_ROLE] = iam.coordinator_role(
        stack,
        logical_id,
        service={"Ref": "CoordinatorService"},
        worker_function=WORKER_FUNCTION,
        secrets=_secrets.COORDINATOR_SECRETS,
    )
    resources[COORDINATOR_INSTANCE_PROFILE] = {
        "Type": "AWS::IAM::InstanceProfile",
        "Condition": ON_EC2,
        "Properties": {"Roles": [{"Ref": COORDINATOR_ROLE}]},
    }
    resources |= _coordinator_service.resources(
        stack, _tags(stack), task_role=COORDINATOR_ROLE, log_retention_days=LOG_RETENTION_DAYS
    )
    return {
        "AWSTemplateFormatVersion": FORMAT_VERSION,
        "Description": (
            f"tpf stack {settings.stack}, release {release}: tables, queues, buckets, worker, roles"
        ),
        "Parameters": _parameters(pipelines) | copy.deepcopy(_coordinator_service.PARAMETERS),
        "Rules": copy.deepcopy(_coordinator_service.RULES),
        "Conditions": {
            ON_EC2: {"Fn::Equals": [{"Ref": "CoordinatorService"}, "ec2.amazonaws.com"]},
            **copy.deepcopy(_coordinator_service.CONDITIONS),
        },
        "Resources": resources,
        "Outputs": _outputs(stack) | _coordinator_service.outputs(),
    }


def render(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2)


# -- tables, queues, buckets ---------------------------------------------------------------


def _tags(stack: StackDescription, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
    tags = {"tpf:stack": stack.settings.stack, **(extra or {})}
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def _table_resources(stack: StackDescription) -> dict[str, Any]:
    resources = {}
    for table in stack.tables:
        properties = _tables.create_request(table, stack.physical(table.name))
        if table.ttl_attribute:
            properties["TimeToLiveSpecification"] = {
                "AttributeName": table.ttl_attribute,
                "Enabled": True,
            }
        properties["Tags"] = _tags(stack)
        resources[logical_id("table", table.name)] = _hardening.waived(
            {
                "Type": "AWS::DynamoDB::Table",
                **KEPT,
                "Properties": _hardening.protected_table(properties),
            },
            _hardening.TABLE_WAIVERS,
        )
    return resources


def _seconds(duration: timedelta) -> int:
    return int(duration.total_seconds())


def _queue_resources(stack: StackDescription) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for queue in stack.queues:
        dead_letters = logical_id("queue", queue.dead_letter_name)
        resources[dead_letters] = {
            "Type": "AWS::SQS::Queue",
            **DISPOSABLE,
            "Properties": _hardening.encrypted_queue(
                {
                    "QueueName": stack.physical(queue.dead_letter_name),
                    "MessageRetentionPeriod": _seconds(queue.dead_letter_retention),
                    "Tags": _tags(stack),
                }
            ),
        }
        resources[logical_id("queue", queue.name)] = {
            "Type": "AWS::SQS::Queue",
            **DISPOSABLE,
            "Properties": _hardening.encrypted_queue(
                {
                    "QueueName": stack.physical(queue.name),
                    "VisibilityTimeout": _seconds(queue.visibility_timeout),
                    "MessageRetentionPeriod": _seconds(queue.retention),
                    "RedrivePolicy": {
                        "deadLetterTargetArn": iam.arn(dead_letters),
                        "maxReceiveCount": queue.max_receive_count,
                    },
                    "Tags": _tags(stack),
                }
            ),
        }
    resources = {
        id_: _hardening.waived(r, _hardening.QUEUE_WAIVERS) for id_, r in resources.items()
    }
    notified = {b.notification.queue for b in stack.buckets if b.notification}
    for name in [n for q in stack.queues for n in (q.name, q.dead_letter_name)]:
        grants = [iam.s3_send_statement(stack, name, logical_id)] if name in notified else []
        resources[_policy_id(name)] = _hardening.tls_only_queue_policy(
            logical_id("queue", name), grants
        )
    return resources


def _policy_id(queue_name: str) -> str:
    return logical_id("queue", queue_name) + "Policy"


def _bucket_resources(stack: StackDescription) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for bucket in stack.buckets:
        properties: dict[str, Any] = {"BucketName": stack.physical(bucket.name)}
        # Every deployed bucket is versioned (``_hardening.private_bucket``), so an overwritten or
        # deleted object expires as long after as a current one would: retention stays what
        # the stack promises.
        rules = [
            {
                "Id": rule["ID"],
                "Status": rule["Status"],
                "ExpirationInDays": rule["Expiration"]["Days"],
                "NoncurrentVersionExpiration": {"NoncurrentDays": rule["Expiration"]["Days"]},
            }
            for rule in _buckets.lifecycle_rules(bucket)
        ]
        if rules:
            properties["LifecycleConfiguration"] = {"Rules": rules}
        resource: dict[str, Any] = {"Type": "AWS::S3::Bucket", **KEPT}
        if bucket.notification:
            note = bucket.notification
            target: dict[str, Any] = {
                "Event": _buckets.OBJECT_CREATED,
                "Queue": iam.arn(logical_id("queue", note.queue)),
            }
            filters = [
                {"Name": n, "Value": v}
                for n, v in (("prefix", note.prefix), ("suffix", note.suffix))
                if v
            ]
            if filters:
                target["Filter"] = {"S3Key": {"Rules": filters}}
            properties["NotificationConfiguration"] = {"QueueConfigurations": [target]}
            # S3 checks that it may send to the queue when the notification is written.
            resource["DependsOn"] = [_policy_id(note.queue)]
        properties["Tags"] = _tags(stack)
        resource["Properties"] = _hardening.private_bucket(properties)
        bucket_id = logical_id("bucket", bucket.name)
        resources[bucket_id] = _hardening.waived(resource, _hardening.BUCKET_WAIVERS)
        resources[bucket_id + "Policy"] = _hardening.tls_only_policy(bucket_id)
    return resources


# -- the worker ----------------------------------------------------------------------------


def _parameters(pipelines: Mapping[str, str]) -> dict[str, Any]:
    parameters = copy.deepcopy(PARAMETERS)
    parameters["Pipelines"]["Default"] = ",".join(pipelines.values())
    return parameters


def work_event_source(queue: str) -> str:
    """Logical id of the mapping that feeds the worker from one release work queue."""
    return logical_id("queue", queue).removesuffix("Queue") + "EventSource"


def _worker(stack: StackDescription, release: str, pipeline_ids: list[str]) -> dict[str, Any]:
    settings = stack.settings
    function_name = stack.physical("worker")
    batch = min(settings.worker_concurrency, SQS_MAX_BATCH)
    environment: dict[str, Any] = {
        "TPF_STACK": settings.stack,
        "TPF_SUBSTRATE": "aws",
        "TPF_PROFILE": settings.profile,
        "TPF_REGION": {"Ref": "AWS::Region"},
        "TPF_WORKER_CONCURRENCY": str(batch),
        "TPF_PIPELINES": {"Ref": "Pipelines"},
        # Where the key is, not the key: the function reads it once per cold start.
        "TPF_SIGNING_KEY": _secrets.reference(_secrets.SIGNING_KEY),
        "TPF_RELEASE": release,
    }
    queues = [work_queue(p, release) for p in pipeline_ids]
    mappings = {
        work_event_source(queue): {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": iam.arn(logical_id("queue", queue)),
                "FunctionName": {"Ref": WORKER_FUNCTION},
                "BatchSize": batch,
                # One failed transition hands back only its own message, not the batch.
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
        }
        for queue in queues
    }
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": function_name,
            "Description": f"Transition worker of stack {settings.stack}, release {release}",
            "Runtime": RUNTIME,
            "Handler": HANDLER,
            "Code": {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Ref": "ArtifactKey"}},
            "Role": iam.arn(WORKER_ROLE),
            "Timeout": function_timeout(stack.queue(queues[0])),
            "MemorySize": MEMORY_MB,
            "Environment": {"Variables": environment},
            "LoggingConfig": {"LogGroup": {"Ref": WORKER_LOG_GROUP}},
            "Tags": _tags(stack, {"tpf:release": release}),
        },
    }
    return {
        WORKER_LOG_GROUP: _hardening.waived(
            {
                "Type": "AWS::Logs::LogGroup",
                **DISPOSABLE,
                "Properties": {
                    "LogGroupName": f"/aws/lambda/{function_name}",
                    "RetentionInDays": LOG_RETENTION_DAYS,
                    "Tags": _tags(stack),
                },
            },
            _hardening.LOG_GROUP_WAIVERS,
        ),
        WORKER_ROLE: iam.worker_role(
            stack,
            logical_id,
            log_group=WORKER_LOG_GROUP,
            work_queues=queues,
            secrets=_secrets.WORKER_SECRETS,
        ),
        WORKER_FUNCTION: _hardening.waived(function, _hardening.FUNCTION_WAIVERS),
        **mappings,
    }


# -- outputs -------------------------------------------------------------------------------


def _output(description: str, value: Any, condition: str | None = None) -> dict[str, Any]:
    output = {"Description": description, "Value": value}
    if condition:
        output["Condition"] = condition
    return output


def _outputs(stack: StackDescription) -> dict[str, Any]:
    outputs = {
        "Stack": _output("TPF_STACK of the coordinator", stack.settings.stack),
        "Region": _output("TPF_REGION of the coordinator", {"Ref": "AWS::Region"}),
        "CoordinatorRoleArn": _output("Role the coordinator runs as", iam.arn(COORDINATOR_ROLE)),
        "CoordinatorInstanceProfileArn": _output(
            "Instance profile of the coordinator's role (EC2)",
            iam.arn(COORDINATOR_INSTANCE_PROFILE),
            ON_EC2,
        ),
        "WorkerFunctionName": _output("The worker function", {"Ref": WORKER_FUNCTION}),
        "WorkerFunctionArn": _output("The worker function", iam.arn(WORKER_FUNCTION)),
        "SigningKeyReference": _output(
            "TPF_SIGNING_KEY of the coordinator", _secrets.reference(_secrets.SIGNING_KEY)
        ),
        "ControlPlaneTokenReference": _output(
            "TPF_CONTROL_PLANE_TOKEN of the coordinator",
            _secrets.reference(_secrets.CONTROL_PLANE_TOKEN),
        ),
        "AdminTokenReference": _output(
            "TPF_ADMIN_TOKEN of the coordinator and of operators' `tpf` commands",
            _secrets.reference(_secrets.ADMIN_TOKEN),
        ),
    }
    for table in stack.tables:
        id_ = logical_id("table", table.name)
        outputs[f"{id_}Name"] = _output(f"Table {table.name}", {"Ref": id_})
        outputs[f"{id_}Arn"] = _output(f"Table {table.name}", iam.arn(id_))
    for queue in stack.queues:
        for name in (queue.name, queue.dead_letter_name):
            id_ = logical_id("queue", name)
            outputs[f"{id_}Name"] = _output(f"Queue {name}", {"Fn::GetAtt": [id_, "QueueName"]})
            outputs[f"{id_}Url"] = _output(f"Queue {name}", {"Ref": id_})
            outputs[f"{id_}Arn"] = _output(f"Queue {name}", iam.arn(id_))
    for bucket in stack.buckets:
        id_ = logical_id("bucket", bucket.name)
        outputs[f"{id_}Name"] = _output(f"Bucket {bucket.name}", {"Ref": id_})
        outputs[f"{id_}Arn"] = _output(f"Bucket {bucket.name}", iam.arn(id_))
    return outputs
