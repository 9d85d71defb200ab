"""CSV scale: one payments file through ``org.pipelineframework.csvpayments``, from the upload
to the output file, with the provider mock answering every row over SQS.

The file is synthetic (every row valid, a few over the provider's limit or blocked), uploaded
with boto3 exactly as a user would; the clock stops when the execution has SUCCEEDED, which it
does only after the output file is written. Requests and WRU are the fleet's, provider included,
taken from the difference of two ledger readings around the run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

from tpf.errors import TpfError
from tpfctl.bench import observe
from tpfctl.bench.session import LazySession
from tpfctl.uploads import upload_csv

PIPELINE_ID = "org.pipelineframework.csvpayments"
TARGET_SECONDS = 60.0
"""For 10,000 rows on the LocalStack stack of a 2-core machine."""
PROVIDER_RATE = "5000"


def synthetic_file(rows: int) -> bytes:
    lines = ["ID,Recipient,Amount,Currency"]
    for n in range(rows):
        amount = "25000" if n % 97 == 0 else f"{n % 900 + 1}.{n % 100:02d}"
        recipient = "Blocked Corp" if n % 89 == 0 else f"Recipient {n}"
        lines.append(f"P{n:06d},{recipient},{amount},{'EUR' if n % 3 else 'USD'}")
    return ("\n".join(lines) + "\n").encode()


def run(bench: LazySession) -> list[dict[str, Any]]:
    session = bench.get()
    stack, rows = session.stack, bench.options.csv_rows
    if not any(m.role == "provider-mock" for m in stack.fleet.members):
        provider = stack.fleet.add("provider-mock", "provider-mock", "--rate", PROVIDER_RATE)
        stack.fleet.start(provider)
    data = synthetic_file(rows)
    settings = stack.settings
    key = f"bench/payments-{rows}.csv"
    print(f"  csv: {rows} rows", file=sys.stderr)
    start = observe.read(stack.fleet)
    began = time.monotonic()
    upload = upload_csv(settings, key, data, endpoints=stack.endpoints)
    tenant, execution_id = upload.tenant_id, upload.execution_id
    status = _wait(stack.api_url, stack.control_plane_token, tenant, execution_id, rows)
    seconds = time.monotonic() - began
    window = observe.Window(start, observe.read(stack.fleet))
    ledger = window.ledger()
    wru = ledger["dynamodb"]["wru"]
    requests = {
        service: round(sum(ops.values()) / rows, 3)
        for service, ops in sorted(ledger["requests"].items())
    }
    target = TARGET_SECONDS * rows / 10_000
    return [
        {
            "benchmark": "csv",
            "pipeline": PIPELINE_ID,
            "substrate": settings.substrate,
            "rows": rows,
            "status": status,
            "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds, 1),
            "requests_per_row": requests,
            "requests_by_operation": ledger["requests"],
            "wru_per_row": {
                "table": round(wru["table"] / rows, 3),
                "indexes": round(wru["indexes"] / rows, 3),
            },
            "target": {"seconds": target},
            "met": status == "SUCCEEDED" and seconds <= target,
        }
    ]


def _wait(api_url: str, token: str, tenant: str, execution_id: str, rows: int) -> str:
    url = f"{api_url}/tpf/control-plane/tenants/{tenant}/executions/{execution_id}"
    deadline = time.monotonic() + max(120.0, rows / 20)
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        while time.monotonic() < deadline:
            response = api.get(url)
            if response.status_code == 200:
                status = str(response.json()["status"])
                if status in ("SUCCEEDED", "FAILED", "DLQ"):
                    return status
            time.sleep(0.1)
    raise TpfError(f"the CSV execution {execution_id} did not end in time")
