"""Putting a payments file in the inbox bucket, as any S3 client would, and knowing at once
which execution its notification starts: the id derives from the object version's idempotency
key, the same one the ingest channel computes."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.ingest import UploadedObject
from tpf.records import execution_id_for
from tpf.settings import Settings
from tpf.substrate import Endpoints, sync_client


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    tenant_id: str
    execution_id: str


def upload_csv(
    settings: Settings, key: str, data: bytes, *, endpoints: Endpoints | None = None
) -> Upload:
    bucket = settings.resource("inbox")
    put = sync_client(settings, "s3", endpoints=endpoints).put_object(
        Bucket=bucket, Key=key, Body=data, ContentType="text/csv"
    )
    uploaded = UploadedObject(
        bucket=bucket,
        key=key,
        version_id=put.get("VersionId"),
        etag=str(put.get("ETag", "")).strip('"') or None,
        size=len(data),
        event_time=None,
    )
    tenant = settings.ingest_tenant
    execution_id = execution_id_for(tenant, settings.ingest_pipeline, uploaded.idempotency_key)
    return Upload(bucket=bucket, key=key, tenant_id=tenant, execution_id=execution_id)
