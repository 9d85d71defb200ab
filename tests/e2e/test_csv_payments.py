"""CSV payments end to end: S3 upload → notification → ingest → workers and a provider over SQS
(dropping and duplicating answers) → output file in the outbox, on both substrates."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.csv_payments.pipeline import PIPELINE_ID
from examples.csv_payments.records import output_lines, parse_csv, provider_decision, render_csv
from tests.e2e.fleets import running_fleet
from tests.waiting import wait_until
from tpf.substrate import sync_client
from tpfctl.stack import OwnedStack
from tpfctl.uploads import upload_csv

# Lossy and repetitive on purpose: drops are repaired by the stall re-send, duplicates are
# recognised as such; the output must not show either.
PROVIDER = ("--rate", "2000", "--drop-rate", "0.05", "--duplicate-rate", "0.1", "--seed", "7")
ROWS = {"embedded": 150, "localstack": 1_000}
"""moto takes milliseconds per transaction, so the embedded file is small; at a 5% drop rate,
150 rows lose none about once in 2,000 runs."""
TENANT = "default"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["embedded", "localstack"])
def fleet(
    request: pytest.FixtureRequest, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnedStack]:
    workdir = tmp_path_factory.mktemp("csv-fleet")
    yield from running_fleet(
        request,
        markers,
        workdir,
        pipelines=("examples.csv_payments.pipeline:csv_payments",),
        provider_mock=PROVIDER,
    )


def payments_file(rows: int, *, prefix: str = "P") -> bytes:
    """``rows`` payments with ids ``<prefix>00000``…: a payment id is paid once per tenant, so
    each test of the module's stack uses ids of its own."""
    lines = ["ID,Recipient,Amount,Currency"]
    for n in range(rows):
        amount = "25000" if n % 97 == 0 else f"{n % 900 + 1}.{n % 100:02d}"
        recipient = "Blocked Corp" if n % 89 == 0 else f"Recipient {n}"
        lines.append(f"{prefix}{n:05d},{recipient},{amount},{'EUR' if n % 3 else 'USD'}")
    lines += ["BAD1,Nobody,-5,EUR", "BAD2,Nobody,5,XYZ", f"{prefix}00001,Again,1,EUR"]
    return ("\n".join(lines) + "\n").encode()


def expected_output(data: bytes) -> bytes:
    parsed = parse_csv(data)
    answers = {p.payment_id: provider_decision(p) for p in parsed.payments}
    return render_csv(output_lines(parsed, answers))


def upload(fleet: OwnedStack, key: str, data: bytes) -> str:
    return upload_csv(fleet.settings, key, data, endpoints=fleet.endpoints).execution_id


def wait_terminal(fleet: OwnedStack, execution_id: str, timeout: float) -> dict[str, Any]:
    import httpx

    url = f"{fleet.api_url}/tpf/control-plane/tenants/{TENANT}/executions/{execution_id}"
    headers = {"Authorization": f"Bearer {fleet.control_plane_token}"}

    def ended() -> dict[str, Any] | None:
        response = httpx.get(url, headers=headers, timeout=10)
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return body if body.get("status") in ("SUCCEEDED", "FAILED", "DLQ") else None

    body = wait_until(ended, timeout=timeout, interval=0.25)
    if body["status"] == "SUCCEEDED":
        result = httpx.get(f"{url}/result", headers=headers, timeout=10).json()
        body["result"] = json.loads(result["resultPayload"]["payload"])
    return body


def executions_of(fleet: OwnedStack) -> list[dict[str, Any]]:
    """Every CSV execution in the table (a test may Scan: it is not a hot path)."""
    dynamodb = sync_client(fleet.settings, "dynamodb", endpoints=fleet.endpoints)
    pages = dynamodb.get_paginator("scan").paginate(TableName=fleet.settings.resource("executions"))
    items = [item for page in pages for item in page["Items"]]
    return [i for i in items if PIPELINE_ID in json.dumps(i)]


def test_a_payments_file_gives_one_output_line_per_row(fleet: OwnedStack) -> None:
    data = payments_file(ROWS[fleet.settings.substrate])
    execution_id = upload(fleet, "incoming/payments 1.csv", data)
    ended = wait_terminal(fleet, execution_id, timeout=240)
    assert ended["status"] == "SUCCEEDED", ended
    report = ended["result"]
    assert report["outputKey"] == f"results/{execution_id}/payments 1.csv"
    s3 = sync_client(fleet.settings, "s3", endpoints=fleet.endpoints)
    written = s3.get_object(Bucket=report["outputBucket"], Key=report["outputKey"])["Body"].read()
    assert written == expected_output(data)
    assert report["invalid"] == 3 and report["rejected"] > 0 and report["noAnswer"] == 0
    # The provider did lose and repeat answers; none of it shows.
    log = (fleet.fleet.workdir / "provider-mock.log").read_text()
    actions = [json.loads(line).get("action") for line in log.splitlines() if line.startswith("{")]
    assert actions.count("request-dropped") > 0


def test_duplicate_notifications_and_identical_reuploads_start_one_execution(
    fleet: OwnedStack,
) -> None:
    data = payments_file(5, prefix="DUP")
    before = len(executions_of(fleet))
    execution_id = upload(fleet, "dup/same.csv", data)
    assert upload(fleet, "dup/same.csv", data) == execution_id  # identical content, same key
    sqs = sync_client(fleet.settings, "sqs", endpoints=fleet.endpoints)
    queue_url = sqs.get_queue_url(QueueName=fleet.settings.resource("ingest"))["QueueUrl"]
    etag = (
        sync_client(fleet.settings, "s3", endpoints=fleet.endpoints)
        .head_object(Bucket=fleet.settings.resource("inbox"), Key="dup/same.csv")["ETag"]
        .strip('"')
    )
    copy = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": fleet.settings.resource("inbox")},
                    "object": {"key": "dup/same.csv", "eTag": etag, "size": len(data)},
                },
            }
        ]
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(copy))
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    assert wait_terminal(fleet, execution_id, timeout=120)["status"] == "SUCCEEDED"

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return attributes["ApproximateNumberOfMessages"] == "0"

    wait_until(drained, timeout=30, interval=0.25)
    assert len(executions_of(fleet)) == before + 1


def test_tpf_upload_follows_a_bad_file_to_its_error_code(fleet: OwnedStack, tmp_path: Path) -> None:
    bad = tmp_path / "wrong-header.csv"
    bad.write_text("Id,Who,How much\n1,Ada,3\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tpfctl",
            "upload",
            str(bad),
            "--wait",
            "--timeout",
            "120",
            "--json",
        ],
        env={**os.environ, **fleet.env, "TPF_API_URL": fleet.api_url},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"]["status"] == "FAILED"
    assert summary["status"]["errorCode"] == "CSV_BAD_HEADER"


def test_a_file_overwritten_within_a_second_is_processed_as_each_upload(
    fleet: OwnedStack,
) -> None:
    """A then B to one key before A's execution reads it: each runs on its own bytes."""
    first = b"ID,Recipient,Amount,Currency\nOVR-A1,Ada,1.00,EUR\nOVR-A2,Ada,2.00,EUR\n"
    second = b"ID,Recipient,Amount,Currency\nOVR-B1,Bob,3.00,EUR\n"
    a = upload(fleet, "race/same.csv", first)
    b = upload(fleet, "race/same.csv", second)
    assert a != b
    outputs = {}
    s3 = sync_client(fleet.settings, "s3", endpoints=fleet.endpoints)
    for execution_id in (a, b):
        ended = wait_terminal(fleet, execution_id, timeout=120)
        assert ended["status"] == "SUCCEEDED", ended
        report = ended["result"]
        written = s3.get_object(Bucket=report["outputBucket"], Key=report["outputKey"])
        outputs[execution_id] = written["Body"].read()
    assert outputs == {a: expected_output(first), b: expected_output(second)}


def test_a_payment_id_in_two_files_is_sent_once_and_reported_duplicate(
    fleet: OwnedStack,
) -> None:
    header = b"ID,Recipient,Amount,Currency\n"
    first = upload(fleet, "once/monday.csv", header + b"ONCE-1,Ada,1.00,EUR\n")
    assert wait_terminal(fleet, first, timeout=120)["status"] == "SUCCEEDED"
    resent = header + b"ONCE-1,Ada,1.00,EUR\nONCE-2,Bob,2.00,EUR\n"
    second = upload(fleet, "once/monday again.csv", resent)
    ended = wait_terminal(fleet, second, timeout=120)
    assert ended["status"] == "SUCCEEDED", ended
    report = ended["result"]
    s3 = sync_client(fleet.settings, "s3", endpoints=fleet.endpoints)
    written = s3.get_object(Bucket=report["outputBucket"], Key=report["outputKey"])["Body"].read()
    lines = {line[0]: line[1:] for line in csv.reader(io.StringIO(written.decode()))}
    assert lines["ONCE-1"] == ["DUPLICATE", "", "", f"already sent by execution {first} (APPROVED)"]
    assert lines["ONCE-2"][0] == "APPROVED"
    assert (report["approved"], report["duplicate"]) == (1, 1)
    # The provider was asked about ONCE-1 by one interaction (perhaps more than once: it drops).
    log = (fleet.fleet.workdir / "provider-mock.log").read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    asked = {e["interactionId"] for e in entries if e.get("idempotencyKey") == "default:ONCE-1"}
    assert len(asked) == 1
