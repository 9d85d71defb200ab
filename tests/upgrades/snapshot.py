"""Snapshots of a stack as a released main left it, to prove that ``tpf infra up`` upgrades it.

``capture`` runs the reference pipelines on the embedded substrate until one order waits for a
decision and one CSV file waits for its payment provider (none runs), stops the fleet, and
writes every table (its shape, TTL and items), queue (its attributes; messages are not kept:
the CSV's requests are sent again after a stall) and bucket (its objects) to JSON. The stack's
name becomes ``{stack}`` and the substrate's address ``{endpoint}``, so ``restore`` can
recreate the stack under any name on any endpoint.

Timestamps are shifted by the time passed since capture, so the restored approval is as far
from its deadline as it was when captured. The release's pipeline code is kept beside the
snapshot (``releases/r<commit>``): the upgrade test's workers run it. Capture with the code of
the main to preserve:

    git worktree add /tmp/previous <commit> && cp -r tests/upgrades /tmp/previous/tests/
    cd /tmp/previous && python -m tests.upgrades.snapshot $OLDPWD/tests/upgrades/stacks/<c>.json
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx

from examples.restaurant_approval import AWAIT_STEP, PIPELINE_ID
from tpf.codec import encode_envelope
from tpfctl.stack import OwnedStack, StackSpec, owned_stack
from tpfctl.uploads import upload_csv

STACK = "upgrade-snapshot"
SIGNING_SECRET = "upgrade-snapshot-signing-secret-not-for-production"
TOKEN = "upgrade-snapshot-token-0123456789"
_YEAR_MS = 366 * 24 * 3600 * 1000

PIPELINES = (
    "examples.restaurant_approval:restaurant_approval",
    "examples.csv_payments.pipeline:csv_payments",
)
PAYMENTS = b"ID,Recipient,Amount,Currency\nup-1,Ada,12.50,EUR\nup-2,Bob,20000,EUR\n"

ORDER = {
    "requestId": "0b3f6a52-6f1e-4c1a-8d2b-5e9f0a1b2c3d",
    "customerName": "Ada",
    "restaurantName": "Chez Lovelace",
    "items": "soup, bread",
    "totalAmount": "23.50",
    "currency": "eur",
}


# -- capture -------------------------------------------------------------------------------


def capture(out: Path) -> None:
    spec = StackSpec(
        substrate="embedded",
        stack=STACK,
        profile="test",
        workers=1,
        pipelines=PIPELINES,
        control_plane_token=TOKEN,
        admin_token=TOKEN,
        extra_env={"TPF_SIGNING_SECRET": SIGNING_SECRET},
    )
    with owned_stack(spec) as stack:
        execution_id, interaction_id = park_an_approval(stack)
        csv_execution = payments_waiting_for_their_provider(stack)
        stack.fleet.stop_all(grace=10)
        snapshot = dump(_clients(stack.env["AWS_ENDPOINT_URL"]), STACK)
        snapshot["parked"] = {"executionId": execution_id, "interactionId": interaction_id}
        snapshot["csv"] = {"executionId": csv_execution, "file": PAYMENTS.decode()}
        snapshot["commit"] = _commit()
        text = _placeholders(json.dumps(snapshot, indent=1, sort_keys=True), stack)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    keep_release_code(Path.cwd(), out.parents[1] / "releases" / f"r{out.stem}")


def keep_release_code(root: Path, target: Path) -> None:
    """The code of the captured release's pipelines, which their workers keep running after
    the upgrade (their contract must match the registered one): each pipeline's module, or its
    package when it is one of a package's modules, and the ``__init__`` files above it."""
    for reference in PIPELINES:
        parts = reference.partition(":")[0].split(".")
        module = root.joinpath(*parts).with_suffix(".py")
        sources = sorted(module.parent.glob("*.py")) if len(parts) > 2 else [module]
        inits = [root.joinpath(*parts[:n], "__init__.py") for n in range(1, len(parts))]
        for source in [*inits, *sources]:
            if source.exists():
                copy = target / source.relative_to(root)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes(source.read_bytes())


def park_an_approval(stack: OwnedStack) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {stack.control_plane_token}"}
    base = f"{stack.api_url}/tpf/control-plane/tenants/acme"
    with httpx.Client(base_url=base, headers=headers, timeout=10) as api:
        submitted = api.post(
            "/executions",
            json={
                "pipelineId": PIPELINE_ID,
                "inputShape": "UNI",
                "inputPayload": encode_envelope("x.Input", ORDER),
                "idempotencyKey": uuid.uuid4().hex,
                "outputStreaming": False,
            },
        )
        submitted.raise_for_status()
        execution_id = submitted.json()["executionId"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = api.get("/interactions/pending", params={"stepId": AWAIT_STEP}).json()
            found = [i for i in pending if i["executionId"] == execution_id]
            if found:
                return execution_id, found[0]["interactionId"]
            time.sleep(0.2)
    raise TimeoutError("the order never reached the inbox")


def payments_waiting_for_their_provider(stack: OwnedStack) -> str:
    execution_id = upload_csv(stack.settings, "upgrade/payments.csv", PAYMENTS).execution_id
    url = f"{stack.api_url}/tpf/control-plane/tenants/{stack.settings.ingest_tenant}"
    headers = {"Authorization": f"Bearer {stack.control_plane_token}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = httpx.get(f"{url}/executions/{execution_id}", headers=headers, timeout=10)
        if found.status_code == 200 and found.json()["status"] == "WAITING_EXTERNAL":
            return execution_id
        time.sleep(0.2)
    raise TimeoutError("the payments never waited for their provider")


def _clients(endpoint: str) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    return {s: session.client(s, endpoint_url=endpoint) for s in ("dynamodb", "sqs", "s3")}


def dump(clients: dict[str, Any], stack: str) -> dict[str, Any]:
    ddb, sqs, s3 = clients["dynamodb"], clients["sqs"], clients["s3"]
    tables = {}
    for name in ddb.list_tables()["TableNames"]:
        if not name.startswith(f"{stack}-"):
            continue
        table = ddb.describe_table(TableName=name)["Table"]
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        items = [
            i for page in ddb.get_paginator("scan").paginate(TableName=name) for i in page["Items"]
        ]
        tables[name] = {
            "KeySchema": table["KeySchema"],
            "AttributeDefinitions": table["AttributeDefinitions"],
            "GlobalSecondaryIndexes": [
                {k: i[k] for k in ("IndexName", "KeySchema", "Projection")}
                for i in table.get("GlobalSecondaryIndexes", [])
            ],
            "ttl": ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") == "ENABLED" else None,
            "items": [_encoded(i) for i in items],
        }
    queues = {}
    for url in sqs.list_queues(QueueNamePrefix=f"{stack}-").get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        kept = {k: v for k, v in attributes.items() if k in _SETTABLE_QUEUE_ATTRIBUTES}
        queues[url.rsplit("/", 1)[-1]] = kept
    buckets = {}
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        if not name.startswith(f"{stack}-"):
            continue
        objects = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for entry in page.get("Contents", []):
                body = s3.get_object(Bucket=name, Key=entry["Key"])["Body"].read()
                objects[entry["Key"]] = base64.b64encode(body).decode()
        versioning = s3.get_bucket_versioning(Bucket=name).get("Status")
        buckets[name] = {"versioning": versioning, "objects": objects}
    return {
        "captured_at_ms": int(time.time() * 1000),
        "tables": tables,
        "queues": queues,
        "buckets": buckets,
    }


_SETTABLE_QUEUE_ATTRIBUTES = {
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
    "KmsMasterKeyId",
    "Policy",
}


def _encoded(value: Any) -> Any:
    """A DynamoDB item in JSON: binary values as base64 under ``B64``."""
    if isinstance(value, bytes):
        return {"B64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _encoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encoded(v) for v in value]
    return value


# -- restore -------------------------------------------------------------------------------


def restore(
    snapshot_text: str, clients: dict[str, Any], *, stack: str, endpoint: str
) -> dict[str, Any]:
    """Recreate the captured stack as ``stack`` on the substrate ``clients`` talk to, its
    timestamps moved forward by the time since capture; returns the snapshot."""
    text = snapshot_text.replace("{stack}", stack).replace(
        "{endpoint}", endpoint.removeprefix("http://")
    )
    snapshot: dict[str, Any] = json.loads(text)
    shift = _Shift(snapshot["captured_at_ms"], int(time.time() * 1000))
    ddb, sqs, s3 = clients["dynamodb"], clients["sqs"], clients["s3"]
    for name, table in snapshot["tables"].items():
        request: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": table["KeySchema"],
            "AttributeDefinitions": table["AttributeDefinitions"],
        }
        if table["GlobalSecondaryIndexes"]:
            request["GlobalSecondaryIndexes"] = table["GlobalSecondaryIndexes"]
        ddb.create_table(**request)
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        if table["ttl"]:
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table["ttl"]},
            )
        for item in table["items"]:
            ddb.put_item(TableName=name, Item=shift.item(_decoded(item)))
    # Dead-letter queues first: the others name them in their redrive policy.
    for name in sorted(snapshot["queues"], key=lambda n: not n.endswith("-dlq")):
        sqs.create_queue(QueueName=name, Attributes=snapshot["queues"][name])
    for name, bucket in snapshot["buckets"].items():
        s3.create_bucket(Bucket=name)
        if bucket["versioning"]:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": bucket["versioning"]}
            )
        for key, body in bucket["objects"].items():
            s3.put_object(Bucket=name, Key=key, Body=base64.b64decode(body))
    return snapshot


class _Shift:
    """Moves epoch timestamps (milliseconds, and TTL seconds) near the capture forward."""

    def __init__(self, captured_ms: int, now_ms: int) -> None:
        self.captured_ms, self.by_ms = captured_ms, now_ms - captured_ms

    def _ms(self, value: int) -> int | None:
        return value + self.by_ms if abs(value - self.captured_ms) < _YEAR_MS else None

    def _s(self, value: int) -> int | None:
        near = abs(value * 1000 - self.captured_ms) < _YEAR_MS
        return value + self.by_ms // 1000 if near else None

    def number(self, text: str) -> str:
        if not text.isdigit():
            return text
        value = int(text)
        shifted = (
            self._ms(value) if len(text) == 13 else self._s(value) if len(text) == 10 else None
        )
        return text if shifted is None else str(shifted)

    def string(self, text: str) -> str:
        def moved(match: re.Match[str]) -> str:
            digits = match.group(0)
            shifted = self._ms(int(digits))
            return digits if shifted is None else str(shifted).zfill(len(digits))

        return re.sub(r"(?<![0-9a-f])\d{13,15}(?![0-9a-f])", moved, text)

    def item(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"N"}:
                return {"N": self.number(value["N"])}
            if set(value) == {"S"}:
                return {"S": self.string(value["S"])}
            return {k: self.item(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.item(v) for v in value]
        return value


def _decoded(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"B64"}:
            return base64.b64decode(value["B64"])
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def _placeholders(text: str, stack: OwnedStack) -> str:
    endpoint = stack.env["AWS_ENDPOINT_URL"]
    return text.replace(endpoint.removeprefix("http://"), "{endpoint}").replace(STACK, "{stack}")


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


if __name__ == "__main__":
    capture(Path(sys.argv[1]))
