"""``tpf upload FILE``: put a payments CSV in the inbox bucket, as any S3 client would.

The coordinators pick the upload up from its S3 event notification; this command only writes
the object. The execution id is known at once: it derives from the object version's
idempotency key, the same one the ingest channel computes, so ``--wait`` can follow it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tpf.codec import decode_envelope
from tpf.errors import InvalidInput, TpfError
from tpf.records import TERMINAL
from tpf.settings import Settings
from tpfctl.cli.common import Api, ApiCallFailed, out, print_json
from tpfctl.uploads import upload_csv

app = typer.Typer()


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="A CSV file: ID,Recipient,Amount,Currency.")],
    key: Annotated[str | None, typer.Option(help="Object key; the file's name by default.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the execution until it ends.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds --wait waits.")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Upload FILE to the inbox bucket; its notification starts one execution."""
    if not file.is_file():
        raise InvalidInput(f"{file}: no such file")
    settings = Settings()
    bucket, name = settings.resource("inbox"), key or file.name
    if not name.endswith(".csv"):
        raise InvalidInput(f"{name}: only keys ending in .csv start an execution")
    upload = upload_csv(settings, name, file.read_bytes())
    execution_id = upload.execution_id
    summary: dict[str, Any] = {
        "bucket": bucket,
        "key": name,
        "tenantId": settings.ingest_tenant,
        "executionId": execution_id,
    }
    if not as_json:
        out.print(f"uploaded s3://{bucket}/{name} → execution {execution_id}")
    if wait:
        summary.update(_follow(Api(settings), settings.ingest_tenant, execution_id, timeout))
        if not as_json:
            _print_outcome(summary)
    if as_json:
        print_json(summary)


def _follow(api: Api, tenant: str, execution_id: str, timeout: float) -> dict[str, Any]:
    path = f"/tpf/control-plane/tenants/{tenant}/executions/{execution_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = api.call("GET", path)
        except ApiCallFailed as exc:
            if exc.status != 404:  # 404: the notification is not consumed yet
                raise
        else:
            if status["status"] in TERMINAL:
                if status["status"] != "SUCCEEDED":
                    return {"status": status}
                envelope = api.call("GET", f"{path}/result")["resultPayload"]
                return {"status": status, "result": decode_envelope(envelope, pointer="/result")}
        time.sleep(0.5)
    raise TpfError(f"execution {execution_id} did not end within {timeout:g}s")


def _print_outcome(summary: dict[str, Any]) -> None:
    status = summary["status"]
    if "result" not in summary:
        out.print(
            f"{status['status']}: {status.get('errorCode')} {status.get('errorMessage') or ''}"
        )
        return
    report = summary["result"]
    if isinstance(report, dict) and "outputKey" in report:
        out.print(
            f"SUCCEEDED: {report['lines']} lines ({report['approved']} approved, "
            f"{report['rejected']} rejected, {report['invalid']} invalid) → "
            f"s3://{report['outputBucket']}/{report['outputKey']}"
        )
    else:
        out.print(f"SUCCEEDED: {report}")
