"""The CSV pipeline reads exactly the bytes that were uploaded, on S3 (moto's server and
LocalStack) as on the in-memory fake: an overwrite of the key cannot change them."""

from __future__ import annotations

import uuid

import pytest

from examples.csv_payments.files import S3Files, etag_of
from tests.substrates import TestStack
from tpf.errors import NonRetryable
from tpf.substrate import sync_client


@pytest.fixture(params=["embedded", "localstack"])
def stack(request: pytest.FixtureRequest) -> TestStack:
    stack: TestStack = request.getfixturevalue(f"{request.param}_stack")
    return stack


def files_of(stack: TestStack) -> S3Files:
    endpoints = {f"endpoint_url_{s}": stack.endpoints.for_service(s) for s in ("s3",)}
    return S3Files(stack.settings.model_copy(update=endpoints))


A = b"ID,Recipient,Amount,Currency\nA,Ada,1,EUR\n"
B = b"ID,Recipient,Amount,Currency\nB,Bob,2,EUR\n"


async def test_a_versioned_inbox_gives_each_upload_its_own_bytes(stack: TestStack) -> None:
    s3 = sync_client(stack.settings, "s3", endpoints=stack.endpoints)
    bucket, key = stack.settings.resource("inbox"), f"files/{uuid.uuid4().hex}.csv"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    first = s3.put_object(Bucket=bucket, Key=key, Body=A)
    s3.put_object(Bucket=bucket, Key=key, Body=B)
    files = files_of(stack)
    assert await files.read(bucket, key, None, etag_of(A)) == A  # as moto notifies: no version
    assert await files.read(bucket, key, first["VersionId"]) == A
    assert await files.read(bucket, key, None, etag_of(B)) == B
    with pytest.raises(NonRetryable) as gone:
        await files.read(bucket, key, None, etag_of(b"never uploaded"))
    assert gone.value.error_code == "CSV_MISSING"


async def test_an_unversioned_bucket_refuses_bytes_that_changed(stack: TestStack) -> None:
    s3 = sync_client(stack.settings, "s3", endpoints=stack.endpoints)
    bucket, key = stack.settings.resource("outbox"), f"files/{uuid.uuid4().hex}.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=A)
    s3.put_object(Bucket=bucket, Key=key, Body=B)
    files = files_of(stack)
    assert await files.read(bucket, key, None, etag_of(B)) == B
    with pytest.raises(NonRetryable) as changed:
        await files.read(bucket, key, None, etag_of(A))
    assert changed.value.error_code == "CSV_CHANGED"
