"""S3 buckets: create, expire objects by lifecycle, send object-created events to a queue.

A notification configuration is written only when it differs from the current one: every write
makes S3 send an ``s3:TestEvent`` message to the queue, which a routine ``up`` should not do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from infra.actions import Action
from infra.resources import Bucket
from tpf.errors import ConfigurationError

OBJECT_CREATED = "s3:ObjectCreated:*"
_MISSING = frozenset({"404", "NoSuchBucket", "NotFound"})
_NO_LIFECYCLE = frozenset({"NoSuchLifecycleConfiguration", "NoSuchLifecycle"})
_OTHER_NOTIFICATIONS = ("TopicConfigurations", "LambdaFunctionConfigurations")


def exists(client: Any, physical: str) -> bool:
    try:
        client.head_bucket(Bucket=physical)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in _MISSING:
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ConfigurationError(
                f"bucket {physical} exists but is not ours (bucket names are global): "
                "choose another TPF_STACK"
            ) from exc
        raise
    return True


def _create(client: Any, physical: str, region: str) -> None:
    request: dict[str, Any] = {"Bucket": physical}
    # us-east-1 is the one region that rejects its own name as a location constraint.
    if region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise


# -- lifecycle -----------------------------------------------------------------------------


def lifecycle_rules(bucket: Bucket) -> list[dict[str, Any]]:
    if bucket.expire_after is None:
        return []
    days = max(1, math.ceil(bucket.expire_after / timedelta(days=1)))
    rule: dict[str, Any] = {
        "ID": "expire",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": days},
    }
    if bucket.versioned:  # an overwritten version expires as long after as the current one
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    return [rule]


def _normalized_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def prefix(rule: dict[str, Any]) -> str:
        return str((rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", "")))

    return sorted(
        (
            {
                "id": rule.get("ID"),
                "status": rule.get("Status"),
                "prefix": prefix(rule),
                "expiration_days": (rule.get("Expiration") or {}).get("Days"),
                "noncurrent_days": (rule.get("NoncurrentVersionExpiration") or {}).get(
                    "NoncurrentDays"
                ),
            }
            for rule in rules
        ),
        key=lambda r: str(r["id"]),
    )


def _current_rules(client: Any, physical: str) -> list[dict[str, Any]]:
    try:
        rules: list[dict[str, Any]] = client.get_bucket_lifecycle_configuration(Bucket=physical)[
            "Rules"
        ]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _NO_LIFECYCLE:
            return []
        raise
    return rules


def _ensure_lifecycle(client: Any, bucket: Bucket, physical: str) -> list[str]:
    desired = lifecycle_rules(bucket)
    if _normalized_rules(_current_rules(client, physical)) == _normalized_rules(desired):
        return []
    if desired:
        client.put_bucket_lifecycle_configuration(
            Bucket=physical, LifecycleConfiguration={"Rules": desired}
        )
    else:
        client.delete_bucket_lifecycle(Bucket=physical)
    return ["lifecycle"]


# -- versioning ----------------------------------------------------------------------------


def _versioning(client: Any, physical: str) -> str | None:
    status = client.get_bucket_versioning(Bucket=physical).get("Status")
    return str(status) if status else None


def _ensure_versioning(client: Any, bucket: Bucket, physical: str) -> list[str]:
    """Turn versioning on where declared. Never off: a bucket once versioned can only be
    suspended, and the versions it holds would stay; that is a decision for an operator."""
    if not bucket.versioned or _versioning(client, physical) == "Enabled":
        return []
    client.put_bucket_versioning(Bucket=physical, VersioningConfiguration={"Status": "Enabled"})
    return ["versioning"]


# -- notification --------------------------------------------------------------------------


def notification_configuration(bucket: Bucket, queue_arn: str | None) -> dict[str, Any]:
    if bucket.notification is None or queue_arn is None:
        return {}
    rules = [
        {"Name": name, "Value": value}
        for name, value in (
            ("prefix", bucket.notification.prefix),
            ("suffix", bucket.notification.suffix),
        )
        if value
    ]
    target: dict[str, Any] = {
        "Id": f"to-{bucket.notification.queue}",
        "QueueArn": queue_arn,
        "Events": [OBJECT_CREATED],
    }
    if rules:
        target["Filter"] = {"Key": {"FilterRules": rules}}
    return {"QueueConfigurations": [target]}


def _normalized_notification(config: dict[str, Any]) -> dict[str, Any]:
    queues = [
        {
            "queue_arn": q["QueueArn"],
            "events": sorted(q["Events"]),
            "filter": {
                rule["Name"].lower(): rule["Value"]
                for rule in ((q.get("Filter") or {}).get("Key") or {}).get("FilterRules", [])
            },
        }
        for q in config.get("QueueConfigurations", [])
    ]
    others = {k: config[k] for k in _OTHER_NOTIFICATIONS if config.get(k)}
    if "EventBridgeConfiguration" in config:
        others["EventBridgeConfiguration"] = True
    return {"queues": sorted(queues, key=lambda q: json.dumps(q, sort_keys=True)), **others}


def _ensure_notification(
    client: Any, bucket: Bucket, physical: str, queue_arn: str | None
) -> list[str]:
    desired = notification_configuration(bucket, queue_arn)
    current = client.get_bucket_notification_configuration(Bucket=physical)
    if _normalized_notification(current) == _normalized_notification(desired):
        return []
    client.put_bucket_notification_configuration(Bucket=physical, NotificationConfiguration=desired)
    return ["notification"]


# -- converging, deleting, describing ------------------------------------------------------


def ensure(
    client: Any, bucket: Bucket, physical: str, *, region: str, queue_arn: str | None
) -> tuple[Action, list[str]]:
    """``queue_arn`` is the ARN of the notification's queue, which must exist already."""
    created = not exists(client, physical)
    if created:
        _create(client, physical, region)
    changes = _ensure_versioning(client, bucket, physical)
    changes += _ensure_lifecycle(client, bucket, physical)
    changes += _ensure_notification(client, bucket, physical, queue_arn)
    action: Action = "created" if created else "updated" if changes else "unchanged"
    return action, changes


def _batches(items: Iterator[dict[str, str]], size: int = 1000) -> Iterator[list[dict[str, str]]]:
    batch: list[dict[str, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _versions(client: Any, physical: str) -> Iterator[dict[str, str]]:
    for page in client.get_paginator("list_object_versions").paginate(Bucket=physical):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            yield {"Key": entry["Key"], "VersionId": entry["VersionId"]}


def _objects(client: Any, physical: str) -> Iterator[dict[str, str]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=physical):
        for entry in page.get("Contents", []):
            yield {"Key": entry["Key"]}


def _empty(client: Any, physical: str) -> None:
    # Versions first (a versioned bucket keeps them after a plain delete), then anything an
    # emulator lists only as a current object, then unfinished multipart uploads.
    for listing in (_versions, _objects):
        for batch in _batches(listing(client, physical)):
            client.delete_objects(Bucket=physical, Delete={"Objects": batch, "Quiet": True})
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=physical):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=physical, Key=upload["Key"], UploadId=upload["UploadId"]
            )


def delete(client: Any, physical: str) -> Action:
    if not exists(client, physical):
        return "absent"
    _empty(client, physical)
    try:
        client.delete_bucket(Bucket=physical)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in _MISSING:
            raise
        return "absent"
    return "deleted"


def live(client: Any, physical: str) -> dict[str, Any]:
    if not exists(client, physical):
        return {"physical": physical, "exists": False}
    notification = _normalized_notification(
        client.get_bucket_notification_configuration(Bucket=physical)
    )
    return {
        "physical": physical,
        "exists": True,
        "versioning": _versioning(client, physical),
        "lifecycle": _normalized_rules(_current_rules(client, physical)),
        "notification": notification["queues"],
        "other_notifications": sorted(k for k in notification if k != "queues"),
    }
