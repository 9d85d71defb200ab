"""The ceiling: the measured fleet's requests, replayed by bare loops (:mod:`tpfctl.bench.bare`).

Each role's plan is its own ledger of the measured window divided by the executions: the
coordinator's requests go to a coordinator-shaped process, the workers' to as many
worker-shaped ones, with the same client library and settings, the same process count and the
same concurrency. Batch sizes are what the fleet achieved (messages or history entries per
request). The bare queues are two fresh ones, so nothing the fleet does interferes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tpf.accounting import RequestLedger
from tpf.records import DUE_INDEX
from tpf.substrate import sync_client
from tpfctl import lifeline
from tpfctl.bench.observe import Window
from tpfctl.stack import OwnedStack

MESSAGE_BYTES = 1_500
"""About the size of a signed command or result carrying a small payload."""
SQS_BATCH, DYNAMODB_BATCH = 10, 25


def plan(
    window: Window,
    role: str,
    *,
    executions: int,
    share: int,
    transitions: int,
    state_changes: int,
    concurrency: int,
    resources: dict[str, str],
) -> dict[str, Any]:
    """The plan of one process of ``role``: ``share`` of the ``executions`` measured."""
    requests: dict[str, dict[str, int]] = window.ledger(role)["requests"]

    def per_call(total: int, calls: int, limit: int) -> int:
        return max(1, min(limit, round(total / calls))) if calls else 1

    sqs, ddb = requests.get("sqs", {}), requests.get("dynamodb", {})
    entries = {
        "SendMessageBatch": per_call(transitions, sqs.get("SendMessageBatch", 0), SQS_BATCH),
        "ReceiveMessage": per_call(transitions, sqs.get("ReceiveMessage", 0), SQS_BATCH),
        "DeleteMessageBatch": per_call(transitions, sqs.get("DeleteMessageBatch", 0), SQS_BATCH),
        "BatchWriteItem": per_call(state_changes, ddb.get("BatchWriteItem", 0), DYNAMODB_BATCH),
    }
    ops = [
        {
            "service": service,
            "operation": operation,
            "per_execution": count / executions,
            "entries": entries.get(operation, 1),
        }
        for service, operations in sorted(requests.items())
        for operation, count in sorted(operations.items())
        if count > 0
    ]
    receives = sqs.get("ReceiveMessage", 0) / executions * share
    return {
        "role": role,
        "executions": share,
        "concurrency": concurrency,
        "ops": ops,
        "prefill": int(receives * entries["ReceiveMessage"]) + SQS_BATCH,
        "message_bytes": MESSAGE_BYTES,
        "resources": resources,
    }


def run_ceiling(
    stack: OwnedStack,
    window: Window,
    *,
    executions: int,
    transitions: int,
    state_changes: int,
    concurrency: dict[str, int],
    workdir: Path,
) -> list[dict[str, Any]]:
    """Start one bare process per fleet process, release them together, return their reports."""
    sqs = sync_client(stack.settings, "sqs", endpoints=stack.endpoints, ledger=RequestLedger())
    suffix = uuid.uuid4().hex[:6]
    queues = {name: stack.settings.resource(f"bare-{name}-{suffix}") for name in ("in", "out")}
    urls = [sqs.create_queue(QueueName=q)["QueueUrl"] for q in queues.values()]
    base = {
        "table": stack.settings.resource("executions"),
        "due_index": DUE_INDEX,
        "history_table": stack.settings.resource("history"),
        "bucket": stack.settings.resource("payloads"),
    }
    # Coordinators send commands to workers and receive their results; workers the reverse.
    directions = {
        "coordinator": {"send_queue": queues["out"], "receive_queue": queues["in"]},
        "worker": {"send_queue": queues["in"], "receive_queue": queues["out"]},
    }
    processes: list[subprocess.Popen[str]] = []
    try:
        for role in ("coordinator", "worker"):
            members = window.members(role)
            for i, _ in enumerate(members):
                share = executions // len(members) + (i < executions % len(members))
                path = workdir / f"bare-{role}-{i + 1}.plan.json"
                path.write_text(
                    json.dumps(
                        plan(
                            window,
                            role,
                            executions=executions,
                            share=share,
                            transitions=transitions,
                            state_changes=state_changes,
                            concurrency=concurrency[role],
                            resources={**base, **directions[role]},
                        )
                    )
                )
                processes.append(_start(stack, path))
        for process in processes:
            _expect(process, "ready")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        return [json.loads(_expect(process, "{")) for process in processes]
    finally:
        for process in processes:
            lifeline.signal_group(process, signal.SIGKILL)
            process.wait()
        for url in urls:
            sqs.delete_queue(QueueUrl=url)


def _start(stack: OwnedStack, plan_path: Path) -> subprocess.Popen[str]:
    with plan_path.with_suffix(".log").open("w") as log:
        return lifeline.spawn(
            [sys.executable, "-m", "tpfctl.bench.bare", str(plan_path)],
            env={**os.environ, **stack.env, **stack.endpoints.as_env()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


def _expect(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(prefix):
        process.wait()
        log = Path(str(process.args[-1])).with_suffix(".log")  # type: ignore[index]
        raise RuntimeError(f"a bare loop failed ({line.strip()!r}); see {log}")
    return line
