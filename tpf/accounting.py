"""Request accounting: every AWS call the process makes, counted where botocore makes it.

Handlers hang on botocore's event system, so sync boto3 clients and aioboto3 clients are counted
the same way and no call site has to remember to count. DynamoDB capacity comes from
``ReturnConsumedCapacity`` in the responses; a failed conditional write consumes capacity but
reports none, so it is counted separately (and priced as one WRU, the worst case for records
under 1 KB).

A role process started with ``TPF_LEDGER_FILE`` writes its snapshot there when it exits and,
so that a benchmark can take differences while it runs, whenever the file's request file
(:func:`request_path`) is touched, and every ``TPF_LEDGER_INTERVAL_S`` seconds (default 1)
while it counts requests. A benchmark reading asks rather than waiting for a timer, so no
process spends CPU on JSON every few hundred milliseconds inside the window being measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tpf import metrics

SQS_CHUNK = 64 * 1024
"""SQS bills one request per started 64 KiB of payload."""
LEDGER_FILE_ENV = "TPF_LEDGER_FILE"
LEDGER_INTERVAL_ENV = "TPF_LEDGER_INTERVAL_S"
REQUEST_POLL_S = 0.05
"""How often the writer looks for a request: one ``stat`` each time."""

_READS = frozenset(
    {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "ExecuteStatement"}
)
_CONDITIONAL_FAILURES = frozenset(
    {"ConditionalCheckFailedException", "TransactionCanceledException"}
)


class RequestLedger:
    """Counts requests per service and operation, with DynamoDB capacity and SQS chunks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.wru_table = 0.0
        self.wru_indexes = 0.0
        self.rru_table = 0.0
        self.rru_indexes = 0.0
        self.failed_conditional_writes = 0
        self.sqs_billed_chunks = 0
        # Per physical table, so a cost target can name the table it is about.
        self.by_table: defaultdict[str, dict[str, float]] = defaultdict(_capacity_counters)
        self.by_operation: defaultdict[str, defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        """Per ``<table> <Operation>``: calls and capacity, each index by name: where the
        WRU budget goes, write by write."""
        self._writer: threading.Thread | None = None
        self._counted = 0
        """Requests counted so far: the writer skips a timed write when nothing changed."""

    # -- botocore hooks ---------------------------------------------------------------------

    def attach(self, events: Any) -> None:
        """Register on a client's (or session's) botocore event emitter."""
        events.register("before-call", self._before_call, unique_id="tpf-ledger-before")
        events.register("after-call", self._after_call, unique_id="tpf-ledger-after")
        events.register("needs-retry", _attempt_failed, unique_id="tpf-substrate-errors")
        if self is LEDGER:
            self._write_periodically()

    def _before_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.service_model.service_name != "sqs":
            return
        body = params.get("body") or b""
        size = len(body) if isinstance(body, bytes | str) else 0
        with self._lock:
            self.sqs_billed_chunks += max(1, math.ceil(size / SQS_CHUNK))

    def _after_call(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        operation = model.name
        error = (parsed.get("Error") or {}).get("Code")
        with self._lock:
            self._counted += 1
            self.requests[service][operation] += 1
            if error:
                self.errors[f"{service}.{operation}.{error}"] += 1
            if service != "dynamodb":
                return
            if error in _CONDITIONAL_FAILURES:
                self.failed_conditional_writes += 1
            self._add_capacity(operation, parsed.get("ConsumedCapacity"))

    def _add_capacity(self, operation: str, consumed: Any) -> None:
        entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        read = operation in _READS
        for entry in entries:
            table = float((entry.get("Table") or {}).get("CapacityUnits", 0.0))
            indexes = sum(
                float(index.get("CapacityUnits", 0.0))
                for group in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
                for index in (entry.get(group) or {}).values()
            )
            if not table and not indexes:
                # ReturnConsumedCapacity=TOTAL: the index share is folded into this figure.
                table = float(entry.get("CapacityUnits", 0.0))
            kind = "rru" if read else "wru"
            if read:
                self.rru_table += table
                self.rru_indexes += indexes
            else:
                self.wru_table += table
                self.wru_indexes += indexes
            name = str(entry.get("TableName", "?"))
            counters = self.by_table[name]
            counters[f"{kind}_table"] += table
            counters[f"{kind}_indexes"] += indexes
            detail = self.by_operation[f"{name} {operation}"]
            detail["calls"] += 1
            detail[f"{kind}_table"] += table
            for group in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                for index, used in (entry.get(group) or {}).items():
                    detail[f"{kind}_index:{index}"] += float(used.get("CapacityUnits", 0.0))

    # -- reading ----------------------------------------------------------------------------

    def total_requests(self, service: str | None = None) -> int:
        with self._lock:
            services = [service] if service else list(self.requests)
            return sum(sum(self.requests[s].values()) for s in services if s in self.requests)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {s: dict(ops) for s, ops in sorted(self.requests.items())},
                "errors": dict(self.errors),
                "dynamodb": {
                    "wru": {"table": self.wru_table, "indexes": self.wru_indexes},
                    "rru": {"table": self.rru_table, "indexes": self.rru_indexes},
                    "failed_conditional_writes": self.failed_conditional_writes,
                    "by_table": {name: dict(c) for name, c in sorted(self.by_table.items())},
                    "by_operation": {
                        name: dict(c) for name, c in sorted(self.by_operation.items())
                    },
                },
                "sqs": {"billed_chunks": self.sqs_billed_chunks},
            }

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), sort_keys=True)

    @staticmethod
    def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
        """Add up the snapshots of several processes."""
        total = RequestLedger()
        for snap in snapshots:
            for service, ops in snap.get("requests", {}).items():
                for op, n in ops.items():
                    total.requests[service][op] += n
            for key, n in snap.get("errors", {}).items():
                total.errors[key] += n
            ddb = snap.get("dynamodb", {})
            total.wru_table += ddb.get("wru", {}).get("table", 0.0)
            total.wru_indexes += ddb.get("wru", {}).get("indexes", 0.0)
            total.rru_table += ddb.get("rru", {}).get("table", 0.0)
            total.rru_indexes += ddb.get("rru", {}).get("indexes", 0.0)
            total.failed_conditional_writes += ddb.get("failed_conditional_writes", 0)
            for name, counters in ddb.get("by_table", {}).items():
                for key, value in counters.items():
                    total.by_table[name][key] += value
            for name, counters in ddb.get("by_operation", {}).items():
                for key, value in counters.items():
                    total.by_operation[name][key] += value
            total.sqs_billed_chunks += snap.get("sqs", {}).get("billed_chunks", 0)
        return total.snapshot()

    # -- the ledger file ----------------------------------------------------------------------

    def write(self, path: Path) -> None:
        """Replace ``path`` at once, so a reader never sees half a snapshot."""
        data = {**self.snapshot(), "writtenAtEpochS": time.time(), "pid": os.getpid()}
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(data, sort_keys=True))
        os.replace(partial, path)

    def _write_periodically(self) -> None:
        path = os.environ.get(LEDGER_FILE_ENV)
        if path and self._writer is None:
            self.keep_written(
                Path(path), interval=float(os.environ.get(LEDGER_INTERVAL_ENV) or 1.0)
            )

    def keep_written(self, target: Path, *, interval: float) -> None:
        """Write ``target`` from a thread of its own: when asked, and every ``interval`` seconds
        while requests are counted."""
        wanted = request_path(target)

        def loop() -> None:
            written_at, written_count = 0.0, -1
            while True:
                time.sleep(REQUEST_POLL_S)
                now = time.time()
                asked = _modified_at(wanted) > written_at
                due = now - written_at >= interval and self._counted != written_count
                if not (asked or due):
                    continue
                counted = self._counted
                # A full disk or a vanished folder must not stop the role.
                with contextlib.suppress(OSError):
                    self.write(target)
                written_at, written_count = now, counted

        self._writer = threading.Thread(target=loop, name="ledger-writer", daemon=True)
        self._writer.start()


def request_path(ledger_file: Path) -> Path:
    """Touching this file asks the process that writes ``ledger_file`` for a snapshot now."""
    return ledger_file.with_name(f"{ledger_file.name}.wanted")


def _modified_at(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _capacity_counters() -> dict[str, float]:
    return dict.fromkeys(("wru_table", "wru_indexes", "rru_table", "rru_indexes"), 0.0)


LEDGER = RequestLedger()
"""The process-wide ledger; every client built by ``tpf.substrate`` reports here."""


def _attempt_failed(
    response: Any = None, caught_exception: Any = None, operation: Any = None, **_: Any
) -> None:
    """Every failed attempt, retried or not, in ``tpf_substrate_errors_total``: throttling,
    5xx and dropped connections show there even when the SDK's retries hid them."""
    if caught_exception is not None:
        code = type(caught_exception).__name__
    elif response is not None and response[0].status_code >= 400:
        code = str((response[1].get("Error") or {}).get("Code", response[0].status_code))
    else:
        return
    if code in _CONDITIONAL_FAILURES or operation is None:
        return  # a condition that did not hold is an answer, not a fault
    metrics.SUBSTRATE_ERRORS.labels(
        service=operation.service_model.service_name, operation=operation.name, code=code
    ).inc()
