"""The roles of a deployed stack, each allowed only what its process does, on this stack only.

::

    worker       work queue: receive, delete, change visibility     results queue: send
                 payloads table and bucket: read, write             registry table: read
                 inbox bucket: read (uploads)   outbox bucket: write (CSV results)
                 its own log group: write       the signing key secret: read
    coordinator  every table: read, write                           buckets: as it uses each
                 queues: send to those it feeds, consume those it reads
                 the signing key and API token secrets: read
    Fargate      this account's image repositories in this region: pull
    task start   the coordinator task's log group: write
                 (ECS starts a Fargate coordinator with it; the process runs as the coordinator)

Every grant names the stack's own ARNs (the image the deployer pushed: the account's
repositories), and no statement has ``*`` as its action; only two grants that AWS offers no
resource-level permission for have ``*`` as their resource (listing event source mappings, a
registry login), and neither reads or changes data.
Each role also carries an explicit Deny for what it must never do (a worker rewriting the
records only the coordinator's conditional writes may change; the coordinator invoking the
worker), so an Allow attached later, from inside or outside the stack, cannot grant it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from infra.resources import WORK_QUEUE_PREFIX, StackDescription

LogicalId = Callable[[str, str], str]
"""``(kind, logical name) -> CloudFormation logical id``, kind one of table, queue, bucket."""

POLICY_VERSION = "2012-10-17"

TABLE_READ = ("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query")
TABLE_WRITE = (
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
# DynamoDB authorizes each item of a transaction as its own Put/Update/Delete/ConditionCheck,
# so these and the PartiQL forms cover every way to change an item.
ITEM_CHANGES = (
    *TABLE_WRITE,
    "dynamodb:PartiQLDelete",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
)
QUEUE_LOOKUP = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")
QUEUE_SEND = ("sqs:SendMessage",)
QUEUE_CONSUME = ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage")
OBJECT_READ = ("s3:GetObject",)
OBJECT_WRITE = ("s3:PutObject",)
# Without ListBucket S3 answers a read of a missing key with 403 instead of 404, and the
# payload store tells "not written yet" from "forbidden" by that status.
BUCKET_LIST = ("s3:ListBucket",)
LOG_WRITE = ("logs:CreateLogStream", "logs:PutLogEvents")
SECRET_READ = ("secretsmanager:GetSecretValue",)
IMAGE_PULL = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
REGISTRY_TOKEN = ("ecr:GetAuthorizationToken",)

WORKER_SENDS_TO = "results"
WORKER_PAYLOADS = "payloads"
WORKER_READS = ("registry",)

COORDINATOR_SENDS_TO = ("await-requests", "dead-letters")
RELEASE_QUEUE_MANAGEMENT = (
    "sqs:CreateQueue",
    "sqs:DeleteQueue",
    "sqs:SetQueueAttributes",
    "sqs:TagQueue",
)
"""Activation creates a release's work queue and retirement deletes it, so the coordinator
manages the stack's ``work-*`` queues; it cannot touch any other queue's attributes."""
MAPPING_READ = ("lambda:GetEventSourceMapping", "lambda:ListEventSourceMappings")
"""A Lambda worker is healthy while its event source mapping is enabled."""
COORDINATOR_CONSUMES = ("results", "ingest", "await-completions")
COORDINATOR_OBJECTS: dict[str, tuple[str, ...]] = {
    "payloads": OBJECT_READ + OBJECT_WRITE,
    "inbox": OBJECT_READ,
    "outbox": OBJECT_WRITE,
    "releases": OBJECT_READ,
}
COORDINATOR_LISTS = ("payloads",)


# -- intrinsic ARNs ------------------------------------------------------------------------


def arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _below(logical_id: str, suffix: str) -> dict[str, Any]:
    return {"Fn::Sub": f"${{{logical_id}.Arn}}{suffix}"}


def _table_arns(stack: StackDescription, name: str, ids: LogicalId) -> list[dict[str, Any]]:
    logical_id = ids("table", name)
    arns = [arn(logical_id)]
    if stack.table(name).indexes:
        arns.append(_below(logical_id, "/index/*"))
    return arns


def _statement(
    sid: str, actions: Sequence[str], resources: list[Any], *, effect: str = "Allow"
) -> dict[str, Any]:
    return {"Sid": sid, "Effect": effect, "Action": sorted(actions), "Resource": resources}


def _role(description: str, service: Any, statements: list[dict[str, Any]]) -> dict[str, Any]:
    trust = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": description,
            "AssumeRolePolicyDocument": {"Version": POLICY_VERSION, "Statement": [trust]},
            "Policies": [
                {
                    "PolicyName": "stack-access",
                    "PolicyDocument": {"Version": POLICY_VERSION, "Statement": statements},
                }
            ],
        },
    }


# -- the roles -----------------------------------------------------------------------------


def worker_role(
    stack: StackDescription,
    ids: LogicalId,
    *,
    log_group: str,
    work_queues: list[str],
    secrets: Sequence[str],
) -> dict[str, Any]:
    """The Lambda worker's execution role; ``log_group`` is the function's log group id,
    ``work_queues`` the logical names of its release's work queues, the only ones it consumes,
    and ``secrets`` the logical ids of the secrets it reads."""
    results = ids("queue", WORKER_SENDS_TO)
    payloads = ids("bucket", WORKER_PAYLOADS)
    records = [t.name for t in stack.tables if t.name != WORKER_PAYLOADS]
    statements = [
        # The event source mapping polls with this role, and needs the queue's attributes.
        _statement(
            "ConsumeWork", QUEUE_CONSUME + QUEUE_LOOKUP, [arn(ids("queue", q)) for q in work_queues]
        ),
        _statement("SendResults", QUEUE_SEND + QUEUE_LOOKUP, [arn(results)]),
        _statement(
            "ReadWritePayloadItems",
            ("dynamodb:GetItem", "dynamodb:PutItem"),
            [arn(ids("table", WORKER_PAYLOADS))],
        ),
        _statement("ReadWritePayloadObjects", OBJECT_READ + OBJECT_WRITE, [_below(payloads, "/*")]),
        _statement("ListPayloadObjects", BUCKET_LIST, [arn(payloads)]),
        # Steps of the CSV payments pipeline read the uploaded file and write its result.
        _statement(
            "ReadUploads",
            (*OBJECT_READ, "s3:GetObjectVersion"),
            [_below(ids("bucket", "inbox"), "/*")],
        ),
        # Which version of an upload its notice meant, when the notice names none (by ETag).
        _statement("ListUploadVersions", ("s3:ListBucketVersions",), [arn(ids("bucket", "inbox"))]),
        _statement("WriteResults", OBJECT_WRITE, [_below(ids("bucket", "outbox"), "/*")]),
        _statement(
            "ReadRegistry",
            TABLE_READ,
            [a for name in WORKER_READS for a in _table_arns(stack, name, ids)],
        ),
        # The fence: a command whose transition has moved on (a replay) is refused unrun.
        _statement(
            "ReadExecutionRecords",
            ("dynamodb:GetItem",),
            [arn(ids("table", "executions"))],
        ),
        _statement("WriteLogs", LOG_WRITE, [arn(log_group)]),
        _statement("ReadSecrets", SECRET_READ, [{"Ref": s} for s in secrets]),
        _statement(
            "NeverChangeRecords",
            ITEM_CHANGES,
            [a for name in records for a in _table_arns(stack, name, ids)],
            effect="Deny",
        ),
    ]
    return _role(
        f"Transition worker of stack {stack.settings.stack}",
        "lambda.amazonaws.com",
        statements,
    )


def coordinator_role(
    stack: StackDescription,
    ids: LogicalId,
    *,
    service: Any,
    worker_function: str,
    secrets: Sequence[str],
) -> dict[str, Any]:
    """The coordinator's role, assumed by ``service`` (the compute it runs on); ``secrets`` are
    the logical ids of the secrets it reads."""
    statements = [
        _statement("ReadSecrets", SECRET_READ, [{"Ref": s} for s in secrets]),
        _statement(
            "ReadWriteTables",
            (*TABLE_READ, "dynamodb:Scan", *TABLE_WRITE),
            [a for table in stack.tables for a in _table_arns(stack, table.name, ids)],
        ),
        _statement(
            "SendToQueues",
            QUEUE_SEND + QUEUE_LOOKUP,
            [arn(ids("queue", name)) for name in COORDINATOR_SENDS_TO],
        ),
        _statement(
            "ConsumeQueues",
            QUEUE_CONSUME + QUEUE_LOOKUP,
            [arn(ids("queue", name)) for name in COORDINATOR_CONSUMES],
        ),
        # The console counts what waits in each dead-letter queue (GetQueueAttributes only).
        _statement(
            "CountDeadLetterQueues",
            QUEUE_LOOKUP,
            [arn(ids("queue", q.dead_letter_name)) for q in stack.queues],
        ),
        _statement(
            "ReleaseWorkQueues",
            QUEUE_SEND + QUEUE_LOOKUP + RELEASE_QUEUE_MANAGEMENT,
            [release_queues_arn(stack)],
        ),
        # Listing mappings has no resource-level permission, so this read-only grant is the one
        # that cannot name the stack.
        _statement("ReadWorkerMappings", MAPPING_READ, ["*"]),
    ]
    for name, actions in COORDINATOR_OBJECTS.items():
        bucket = ids("bucket", name)
        access = "Read" * (OBJECT_READ[0] in actions) + "Write" * (OBJECT_WRITE[0] in actions)
        statements.append(_statement(f"{access}{bucket}Objects", actions, [_below(bucket, "/*")]))
    statements.append(
        _statement(
            "ListPayloadObjects",
            BUCKET_LIST,
            [arn(ids("bucket", name)) for name in COORDINATOR_LISTS],
        )
    )
    # Commands reach workers only through the work queue, where visibility, redrive and the
    # coordinator's fencing apply; a direct invocation would bypass all three.
    statements.append(
        _statement(
            "NeverInvokeWorkers",
            ("lambda:InvokeFunction",),
            [arn(worker_function), _below(worker_function, ":*")],
            effect="Deny",
        )
    )
    return _role(f"Coordinator of stack {stack.settings.stack}", service, statements)


def coordinator_task_execution_role(stack: StackDescription, *, log_group: str) -> dict[str, Any]:
    """The role ECS pulls a Fargate coordinator's image and writes its logs with (the process
    itself runs as the coordinator role); ``log_group`` is the task's log group id.

    The image's repository is named only by the deployer's image parameter, so the pull is
    granted on this account's repositories in this region rather than parsed out of that URI."""
    repositories = {
        "Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*"
    }
    statements = [
        # A registry login has no resource-level permission; it grants no image by itself.
        _statement("GetRegistryToken", REGISTRY_TOKEN, ["*"]),
        _statement("PullImage", IMAGE_PULL, [repositories]),
        _statement("WriteLogs", LOG_WRITE, [arn(log_group)]),
    ]
    return _role(
        f"Starts the Fargate coordinator tasks of stack {stack.settings.stack}",
        "ecs-tasks.amazonaws.com",
        statements,
    )


def release_queues_arn(stack: StackDescription) -> dict[str, Any]:
    """Every release-scoped work queue of the stack, and their dead-letter queues."""
    pattern = stack.physical(WORK_QUEUE_PREFIX) + "*"
    return {
        "Fn::Sub": f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{pattern}"
    }


def s3_send_statement(stack: StackDescription, queue: str, ids: LogicalId) -> dict[str, Any]:
    """Lets S3 deliver object events from the stack's buckets that notify ``queue``.

    The bucket ARNs are spelled out rather than taken from the buckets: each bucket waits for
    the queue's policy (S3 checks it when the notification is written), so it cannot name them.
    Bucket names are global; the account condition refuses another account's namesake.
    """
    senders = sorted(
        stack.physical(b.name)
        for b in stack.buckets
        if b.notification and b.notification.queue == queue
    )
    return {
        "Sid": "ObjectEventsFromStackBuckets",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": arn(ids("queue", queue)),
        "Condition": {
            "ArnLike": {
                "aws:SourceArn": [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{b}"} for b in senders]
            },
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        },
    }
