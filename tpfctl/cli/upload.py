"""``tpf upload FILE``: put a payments CSV in the inbox bucket, as any S3 client would.

The coordinators pick the upload up from its S3 event notification; this command only writes
the object. The execution id is known at once: it derives from the object version's
idempotency key, the same one the ingest channel computes, so ``--wait`` can follow it: on a
terminal with a bar of the rows answered so far while the execution waits on the provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from tpf.codec import decode_envelope
from tpf.errors import InvalidInput, TpfError
from tpf.records import TERMINAL, Status
from tpf.settings import Settings
from tpfctl.cli.common import Api, ApiCallFailed, out, print_json
from tpfctl.cli.executions import awaited
from tpfctl.cli.progress import bars, for_people
from tpfctl.cli.tables import short_id
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
        with bars(wanted=for_people(as_json=as_json)) as progress:
            following = Following(progress, execution_id)
            summary.update(
                follow(Api(settings), settings.ingest_tenant, execution_id, timeout, following)
            )
        if not as_json:
            _print_outcome(summary)
    if as_json:
        print_json(summary)


class Following:
    """The bar of one execution: its status and step, and while it waits on an await, how
    many of the await's interactions (one per row of a payments file) are answered."""

    def __init__(self, progress: Progress, execution_id: str) -> None:
        self.progress = progress
        self.short = short_id(execution_id)
        self.task = progress.add_task(self.short, total=None)

    def show(self, status: dict[str, Any], waited_on: dict[str, Any] | None) -> None:
        if waited_on is not None:
            self.progress.update(
                self.task,
                description=f"{self.short} {waited_on['stepId']} answered",
                total=waited_on["total"],
                completed=waited_on["answered"],
            )
        else:  # the step says how far it is; the bar keeps an earlier await's count, if any
            state = f"{self.short} {status['status']} step {status['stepIndex']}"
            self.progress.update(self.task, description=state)

    def end(self, status: dict[str, Any]) -> None:
        """Full, whatever the outcome: the bar shows that the wait is over, not success."""
        total = next(t.total for t in self.progress.tasks if t.id == self.task) or 1
        state = f"{self.short} {status['status']}"
        self.progress.update(self.task, description=state, total=total, completed=total)
        self.progress.stop()


def follow(
    api: Api,
    tenant: str,
    execution_id: str,
    timeout: float,
    following: Following,
    pause: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the execution until it ends (its result too if it succeeded), showing progress."""
    base = f"/tpf/control-plane/tenants/{tenant}/executions/{execution_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = api.call("GET", base)
        except ApiCallFailed as exc:
            if exc.status != 404:  # 404: the notification is not consumed yet
                raise
        else:
            if status["status"] in TERMINAL:
                following.end(status)
                if status["status"] != "SUCCEEDED":
                    return {"status": status}
                envelope = api.call("GET", f"{base}/result")["resultPayload"]
                return {"status": status, "result": decode_envelope(envelope, pointer="/result")}
            waiting = status["status"] == Status.WAITING_EXTERNAL
            following.show(status, awaited(api, base) if waiting else None)
        pause(0.5)
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
