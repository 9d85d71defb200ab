"""The ledger file a benchmark reads: written when asked, and on a timer only while counting."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.waiting import wait_until
from tpf.accounting import RequestLedger, request_path

# What botocore's after-call event carries about the operation.
_Model = SimpleNamespace(service_model=SimpleNamespace(service_name="sqs"), name="SendMessageBatch")


def _written(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def test_a_request_file_gets_a_snapshot_written_after_it(tmp_path: Path) -> None:
    ledger, target = RequestLedger(), tmp_path / "coordinator.ledger.json"
    ledger.keep_written(target, interval=3600)
    ledger._after_call(parsed={}, model=_Model)
    asked_at = time.time()
    request_path(target).touch()

    snapshot = wait_until(
        lambda: (s := _written(target)) and s["writtenAtEpochS"] >= asked_at and s,
        timeout=10,
    )
    assert snapshot["requests"] == {"sqs": {"SendMessageBatch": 1}}


def test_counting_requests_gets_the_file_rewritten_on_the_timer(tmp_path: Path) -> None:
    ledger, target = RequestLedger(), tmp_path / "worker.ledger.json"
    ledger.keep_written(target, interval=0.1)
    for _ in range(3):
        ledger._after_call(parsed={}, model=_Model)

    wait_until(
        lambda: (s := _written(target)) and s["requests"] == {"sqs": {"SendMessageBatch": 3}},
        timeout=10,
    )
