"""CSV scale: one payments file through ``org.pipelineframework.csvpayments``, from the upload
to the output file, with the provider mock answering every row over SQS.

The file is synthetic (every row valid, a few over the provider's limit or blocked), uploaded
with boto3 exactly as a user would; the clock stops when the execution has SUCCEEDED, which it
does only after the output file is written. Requests and WRU are the fleet's, provider included,
taken from the difference of two ledger readings around the run.

Memory: the peak resident set (``VmHWM``) of every process of the fleet, reset before each file
(``/proc/<pid>/clear_refs``), so each size reports its own peak. A file larger than
``BASELINE_ROWS`` is preceded by one of that size: what a process holds must not grow with the
file (``MEMORY_GROWTH``), and stays under ``MEMORY_TARGET_MB``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
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
BASELINE_ROWS = 10_000
MEMORY_TARGET_MB = 300.0
MEMORY_GROWTH = 1.25
"""At most this much more peak memory in any process for the larger file than for the baseline."""


def synthetic_file(rows: int) -> bytes:
    """``rows`` payments with ids of their own (``R<rows>-<n>``): a payment id is paid once per
    tenant, so a file sharing ids with an earlier one would be mostly ``DUPLICATE``."""
    lines = ["ID,Recipient,Amount,Currency"]
    for n in range(rows):
        amount = "25000" if n % 97 == 0 else f"{n % 900 + 1}.{n % 100:02d}"
        recipient = "Blocked Corp" if n % 89 == 0 else f"Recipient {n}"
        lines.append(f"R{rows}-{n:06d},{recipient},{amount},{'EUR' if n % 3 else 'USD'}")
    return ("\n".join(lines) + "\n").encode()


def run(bench: LazySession) -> list[dict[str, Any]]:
    session = bench.get()
    stack, rows = session.stack, bench.options.csv_rows
    if not any(m.role == "provider-mock" for m in stack.fleet.members):
        provider = stack.fleet.add("provider-mock", "provider-mock", "--rate", PROVIDER_RATE)
        stack.fleet.start(provider)
    sizes = [BASELINE_ROWS, rows] if rows > BASELINE_ROWS else [rows]
    records = [_one_file(stack, size) for size in sizes]
    if len(records) == 2:
        records.append(_memory_verdict(records[0], records[1]))
    return records


def _one_file(stack: Any, rows: int) -> dict[str, Any]:
    data = synthetic_file(rows)
    settings = stack.settings
    key = f"bench/payments-{rows}.csv"
    print(f"  csv: {rows} rows", file=sys.stderr)
    reset_peaks(stack.fleet)
    start = observe.read(stack.fleet)
    began = time.monotonic()
    upload = upload_csv(settings, key, data, endpoints=stack.endpoints)
    tenant, execution_id = upload.tenant_id, upload.execution_id
    status = _wait(stack.api_url, stack.control_plane_token, tenant, execution_id, rows)
    seconds = time.monotonic() - began
    window = observe.Window(start, observe.read(stack.fleet))
    peaks = peak_rss_mb(stack.fleet)
    ledger = window.ledger()
    wru = ledger["dynamodb"]["wru"]
    requests = {
        service: round(sum(ops.values()) / rows, 3)
        for service, ops in sorted(ledger["requests"].items())
    }
    target = TARGET_SECONDS * rows / 10_000
    return {
        "benchmark": "csv",
        "pipeline": PIPELINE_ID,
        "substrate": settings.substrate,
        "rows": rows,
        "status": status,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds, 1),
        "peak_rss_mb": peaks,
        "requests_per_row": requests,
        "requests_by_operation": ledger["requests"],
        "wru_per_row": {
            "table": round(wru["table"] / rows, 3),
            "indexes": round(wru["indexes"] / rows, 3),
        },
        "target": {"seconds": target, "peak_rss_mb": MEMORY_TARGET_MB},
        "met": status == "SUCCEEDED"
        and seconds <= target
        and max(peaks.values(), default=0.0) <= MEMORY_TARGET_MB,
    }


def _memory_verdict(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Whether any process held more for the larger file than for the baseline."""
    growth = {
        name: round(mb / small["peak_rss_mb"][name], 2)
        for name, mb in large["peak_rss_mb"].items()
        if small["peak_rss_mb"].get(name)
    }
    return {
        "benchmark": "csv_memory",
        "rows": [small["rows"], large["rows"]],
        "growth": growth,
        "target": {"growth": MEMORY_GROWTH, "peak_rss_mb": MEMORY_TARGET_MB},
        "met": bool(growth)
        and max(growth.values()) <= MEMORY_GROWTH
        and max(large["peak_rss_mb"].values()) <= MEMORY_TARGET_MB,
    }


def _pids(fleet: Any) -> dict[str, int]:
    return {m.name: m.process.pid for m in fleet.members if m.process is not None and m.alive}


def reset_peaks(fleet: Any) -> None:
    """Start each process's high-water mark afresh (Linux: ``5 > /proc/<pid>/clear_refs``)."""
    for pid in _pids(fleet).values():
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(fleet: Any) -> dict[str, float]:
    """``VmHWM`` of every live process of the fleet, in MB (10^6 bytes)."""
    peaks = {}
    for name, pid in _pids(fleet).items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = round(int(line.split()[1]) * 1024 / 1e6, 1)
    return peaks


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
