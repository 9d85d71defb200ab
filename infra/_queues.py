"""SQS queues: each queue with its dead-letter queue, its timings, and who may send to it.

Attributes are compared one by one and only the ones that differ are set, so a second run
makes no writes. JSON-valued attributes (redrive policy, access policy) are compared parsed:
emulators and AWS disagree on spacing and on whether ``maxReceiveCount`` is a string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from infra.actions import Action
from infra.resources import Queue

_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "Policy"})


@dataclass(frozen=True)
class QueueState:
    action: Action
    url: str
    arn: str
    attributes: dict[str, str]
    changes: list[str] = field(default_factory=list)


def _seconds(duration: timedelta) -> str:
    return str(int(duration.total_seconds()))


def dead_letter_attributes(queue: Queue) -> dict[str, str]:
    return {"MessageRetentionPeriod": _seconds(queue.dead_letter_retention)}


def attributes(queue: Queue, dead_letter_arn: str) -> dict[str, str]:
    redrive = {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": queue.max_receive_count}
    return {
        "VisibilityTimeout": _seconds(queue.visibility_timeout),
        "MessageRetentionPeriod": _seconds(queue.retention),
        "RedrivePolicy": json.dumps(redrive),
    }


def s3_send_policy(queue_arn: str, bucket_arns: list[str]) -> str:
    """Lets S3 deliver event notifications from the stack's own buckets (needed on real AWS).

    Bucket names are global, so the account condition keeps another account's bucket of the
    same name from sending here.
    """
    account = queue_arn.split(":")[4]  # arn:<partition>:sqs:<region>:<account>:<name>
    statements = [
        {
            "Sid": f"s3-{arn.rsplit(':', 1)[-1]}",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {
                "ArnLike": {"aws:SourceArn": arn},
                "StringEquals": {"aws:SourceAccount": account},
            },
        }
        for arn in sorted(bucket_arns)
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _normalized(name: str, value: str | None) -> Any:
    if not value:
        return None
    if name not in _JSON_ATTRIBUTES:
        return value
    parsed = json.loads(value)
    if name == "RedrivePolicy":
        parsed["maxReceiveCount"] = int(parsed["maxReceiveCount"])
    return parsed


def url_of(client: Any, physical: str) -> str | None:
    try:
        url: str = client.get_queue_url(QueueName=physical)["QueueUrl"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING:
            return None
        raise
    return url


def _read(client: Any, url: str) -> dict[str, str]:
    attrs: dict[str, str] = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
        "Attributes"
    ]
    return attrs


def ensure(client: Any, physical: str, desired: dict[str, str]) -> QueueState:
    url = url_of(client, physical)
    if url is None:
        url = client.create_queue(QueueName=physical, Attributes=desired)["QueueUrl"]
        current = _read(client, url)
        return QueueState("created", url, current["QueueArn"], current)
    current = _read(client, url)
    drift = {
        name: value
        for name, value in desired.items()
        if _normalized(name, current.get(name)) != _normalized(name, value)
    }
    if drift:
        client.set_queue_attributes(QueueUrl=url, Attributes=drift)
    action: Action = "updated" if drift else "unchanged"
    return QueueState(action, url, current["QueueArn"], {**current, **drift}, sorted(drift))


def ensure_policy(client: Any, state: QueueState, bucket_arns: list[str]) -> list[str]:
    """Set (or clear) the access policy; returns ["Policy"] when it had to change."""
    desired = s3_send_policy(state.arn, bucket_arns) if bucket_arns else ""
    if _normalized("Policy", state.attributes.get("Policy")) == _normalized("Policy", desired):
        return []
    client.set_queue_attributes(QueueUrl=state.url, Attributes={"Policy": desired})
    return ["Policy"]


def delete(client: Any, physical: str) -> Action:
    url = url_of(client, physical)
    if url is None:
        return "absent"
    try:
        client.delete_queue(QueueUrl=url)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in _MISSING:
            raise
        return "absent"
    return "deleted"


def live(client: Any, physical: str) -> dict[str, Any]:
    url = url_of(client, physical)
    if url is None:
        return {"physical": physical, "exists": False}
    attrs = _read(client, url)
    return {
        "physical": physical,
        "exists": True,
        "url": url,
        "arn": attrs.get("QueueArn"),
        "visibility_timeout": int(attrs.get("VisibilityTimeout", 0)),
        "retention": int(attrs.get("MessageRetentionPeriod", 0)),
        "redrive_policy": _normalized("RedrivePolicy", attrs.get("RedrivePolicy")),
        "policy": _normalized("Policy", attrs.get("Policy")),
        "messages": {
            "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        },
    }
