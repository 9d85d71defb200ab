"""What a security review asks of the template's resources, and the few findings it waives.

The template is scanned by checkov (``make scan``, and ``tests/unit/test_template_scan.py`` in
CI). A finding is fixed in the template where it can be; the rest are waived here, each in the
resource's own ``Metadata`` (where checkov reads it) with the reason a reviewer can weigh.
Encryption at rest everywhere uses AWS-owned or AWS-managed keys on purpose: a customer-managed
KMS key brings a key policy, rotation and a per-request cost that a deployer opts into.
"""

from __future__ import annotations

from typing import Any

from infra import iam

POINT_IN_TIME_RECOVERY = {"PointInTimeRecoveryEnabled": True}

CUSTOMER_KEY = (
    "encrypted at rest with an AWS-owned or AWS-managed key, the deliberate default; a "
    "customer-managed KMS key (key policy, rotation, per-request cost) is the deployer's choice"
)

TABLE_WAIVERS = (("CKV_AWS_119", f"The table is {CUSTOMER_KEY}."),)
BUCKET_WAIVERS = (
    (
        "CKV_AWS_18",
        "Server access logs need a separate log bucket whose owner and retention are the "
        "account's (often a central one); object access is audited with CloudTrail data events "
        "where the account turns them on.",
    ),
)
LOG_GROUP_WAIVERS = (
    (
        "CKV_AWS_158",
        f"The log group is {CUSTOMER_KEY}; the worker logs ids and outcomes, never payloads.",
    ),
)
SECRET_WAIVERS = (
    ("CKV_AWS_149", f"The secret is {CUSTOMER_KEY}; only the stack's roles may read it."),
)
QUEUE_WAIVERS = (
    (
        "CKV_AWS_27",
        "The queue is encrypted at rest with SQS-managed keys (SqsManagedSseEnabled), which this "
        "check does not recognize; a KMS key instead would stop S3 notifying the ingest queue "
        "(S3 cannot use the AWS-managed aws/sqs key) and need kms grants for every producer "
        "and consumer.",
    ),
)
FUNCTION_WAIVERS = (
    (
        "CKV_AWS_173",
        "The environment holds no secret (the signing key is a secretsmanager: reference read at "
        "cold start); Lambda encrypts the rest with its service key.",
    ),
    (
        "CKV_AWS_117",
        "The worker reaches only AWS APIs (DynamoDB, SQS, S3, Secrets Manager), over TLS and "
        "with its role; a VPC would add NAT or endpoints and no resource to protect on it.",
    ),
    (
        "CKV_AWS_116",
        "Only SQS event source mappings invoke the worker, never an asynchronous caller: a "
        "failed message returns to its work queue and redrives to that queue's dead-letter "
        "queue, which a function dead-letter queue would never see.",
    ),
    (
        "CKV_AWS_115",
        "Lambda scales the worker with its queues' backlog by design; a reserved concurrency "
        "takes from the account's unreserved pool and cannot deploy on an account at the "
        "minimum quota. A shared account sets one per deployment.",
    ),
)


def waived(resource: dict[str, Any], waivers: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``resource`` with ``waivers`` (check id, reason) where checkov reads them."""
    skips = [{"id": check, "comment": reason} for check, reason in waivers]
    return {**resource, "Metadata": {"checkov": {"skip": skips}}}


def protected_table(properties: dict[str, Any]) -> dict[str, Any]:
    """Table properties that survive a mistaken delete and a bad write: CloudFormation and the
    console refuse to delete the table, and it can be restored to any second of 35 days."""
    return {
        **properties,
        "DeletionProtectionEnabled": True,
        "PointInTimeRecoverySpecification": POINT_IN_TIME_RECOVERY,
    }


def encrypted_queue(properties: dict[str, Any]) -> dict[str, Any]:
    """SQS-managed server-side encryption: no key to manage, nothing for producers to change."""
    return {**properties, "SqsManagedSseEnabled": True}


def private_bucket(properties: dict[str, Any]) -> dict[str, Any]:
    """A bucket no ACL or policy can make public, owned by the account whoever writes to it,
    encrypted with S3-managed keys and versioned, so an overwrite or delete can be undone."""
    return {
        **properties,
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            ]
        },
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "VersioningConfiguration": {"Status": "Enabled"},
    }


def _deny_plain_http(action: str, resources: list[Any]) -> dict[str, Any]:
    return {
        "Sid": "DenyPlainHttp",
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": resources,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """Refuses every request to ``bucket`` (a logical id) that does not arrive over TLS."""
    statement = _deny_plain_http("s3:*", [iam.arn(bucket), {"Fn::Sub": f"${{{bucket}.Arn}}/*"}])
    return {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {"Version": iam.POLICY_VERSION, "Statement": [statement]},
        },
    }


def tls_only_queue_policy(queue: str, grants: list[dict[str, Any]]) -> dict[str, Any]:
    """The one policy a queue may have (a logical id): ``grants``, and no request without TLS.
    AWS's own senders (S3 notifications, Lambda's pollers) always use TLS."""
    statements = [_deny_plain_http("sqs:*", [iam.arn(queue)]), *grants]
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": queue}],
            "PolicyDocument": {"Version": iam.POLICY_VERSION, "Statement": statements},
        },
    }
