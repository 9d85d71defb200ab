"""The operator scripts in ``scripts/``, run as an operator runs them, against the LocalStack stack.

The module owns its stack, so counts and dead letters are exact: an in-process coordinator,
with the real worker code running each transition, leaves four executions behind:

- a restaurant order accepted in the inbox (SUCCEEDED, through a completed interaction),
- a restaurant order without a customer (FAILED at validation, so a dead-letter envelope),
- a restaurant order parked on its decision (WAITING_EXTERNAL, one pending interaction),
- an ``org.example.orders`` order (SUCCEEDED).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coordinator.role import build
from coordinator.testing import TEST_KEY
from coordinator.wiring import Coordinator
from examples.orders import orders
from examples.restaurant_approval import AWAIT_STEP, restaurant_approval
from infra.provision import provision, teardown
from infra.resources import work_queue
from tests.substrates import (
    TestStack,
    localstack_endpoints,
    localstack_unavailable,
    require,
    settings_for,
)
from tests.unit.drive import WORKER
from tpf.clock import now_ms
from tpf.queues import SqsQueue
from tpf.records import Status
from tpf.registry import register_pipeline
from tpf.runtime import InvocationRuntime
from tpf.signing import Signer
from tpf.substrate import open_clients
from tpf.wire import TransitionCommand, decode
from worker.transition import run_transition

pytestmark = pytest.mark.substrate

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
TENANT = "acme"
RESTAURANT = restaurant_approval.id
DECIDED_AT = "2026-12-01T12:00:00Z"
PIPELINES = {p.id: p for p in (restaurant_approval, orders)}


def order(customer: str) -> dict[str, Any]:
    return {
        "requestId": uuid.uuid4().hex,
        "customerName": customer,
        "restaurantName": "Chez Lovelace",
        "items": "soup",
        "totalAmount": "23.50",
        "currency": "EUR",
    }


@dataclass(frozen=True)
class Executions:
    succeeded: str
    failed: str
    waiting: str
    other_pipeline: str
    pending_interaction: str
    """Of the waiting execution."""
    completed_interaction: str
    """Of the succeeded execution."""
    started_ms: int


@pytest.fixture(scope="module")
def stack() -> Iterator[TestStack]:
    endpoints = localstack_endpoints()
    require(localstack_unavailable(endpoints))
    settings = settings_for("localstack", endpoints, submit_without_worker=True)
    provision(settings, endpoints=endpoints, releases=[(p, "1.0.0") for p in PIPELINES])
    yield TestStack(substrate="localstack", settings=settings, endpoints=endpoints)
    teardown(settings, endpoints=endpoints)


async def drive(c: Coordinator, queues: list[SqsQueue], done: dict[str, set[Status]]) -> None:
    """Run the work queues' commands until every execution of ``done`` is in one of its states."""

    async def settled() -> bool:
        for execution_id, statuses in done.items():
            if (await c.service.status(TENANT, execution_id)).status not in statuses:
                return False
        return True

    deadline = time.monotonic() + 30
    while not await settled():
        assert time.monotonic() < deadline, f"executions did not settle: {done}"
        for work, message in [(q, m) for q in queues for m in await q.receive(wait_s=0)]:
            command = decode(message.body)
            assert isinstance(command, TransitionCommand)
            result = await run_transition(
                PIPELINES[command.pipeline_id],
                command,
                payloads=c.payloads,
                runtime=InvocationRuntime(),
                worker=WORKER,
            )
            await c.committer.commit(result, now_ms=now_ms())
            await work.delete(message.receipt)


@pytest.fixture(scope="module")
async def executions(stack: TestStack) -> Executions:
    started_ms = now_ms()
    settings = stack.settings
    async with open_clients(settings, endpoints=stack.endpoints) as aws:
        c = await build(settings, aws, Signer(TEST_KEY))
        for pipeline in PIPELINES.values():
            await register_pipeline(c.registry, pipeline, "1.0.0", now_ms=now_ms())
        work = [
            await SqsQueue.open(aws.sqs, settings.resource(work_queue(p, "1.0.0")))
            for p in PIPELINES
        ]

        async def submit(pipeline_id: str, value: Any) -> str:
            outcome = await c.service.submit(
                tenant_id=TENANT,
                pipeline_id=pipeline_id,
                value=value,
                idempotency_key=uuid.uuid4().hex,
                now_ms=now_ms(),
            )
            return outcome.record.execution_id

        accepted, failed, waiting = [
            await submit(RESTAURANT, order(name)) for name in ("Ada", " ", "Grace")
        ]
        other = await submit(orders.id, {"orderId": "o-1", "amountCents": 1200, "customer": "Ada"})
        parked = {Status.WAITING_EXTERNAL}
        await drive(
            c,
            work,
            {
                accepted: parked,
                waiting: parked,
                failed: {Status.FAILED},
                other: {Status.SUCCEEDED},
            },
        )

        pending = {i.execution_id: i for i in await c.awaits.pending(TENANT, step_id=AWAIT_STEP)}
        decision = pending[accepted]
        order_id = json.loads(decision.request)["orderId"]
        await c.awaits.complete(
            TENANT,
            response={"accepted": {"orderId": order_id, "decidedAt": DECIDED_AT, "note": "ok"}},
            interaction_id=decision.interaction_id,
            actor="chef",
        )
        await drive(c, work, {accepted: {Status.SUCCEEDED}})
        await c.close()  # flushes the history entries written off the commit path
    return Executions(
        succeeded=accepted,
        failed=failed,
        waiting=waiting,
        other_pipeline=other,
        pending_interaction=pending[waiting].interaction_id,
        completed_interaction=decision.interaction_id,
        started_ms=started_ms,
    )


# -- running a script as an operator does ----------------------------------------------------


def operator_env(stack: TestStack, state_dir: Path) -> dict[str, str]:
    """The standard AWS variables and TPF_STACK, nothing inherited that could point elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "TPF_"))}
    env.update(
        TPF_STACK=stack.settings.stack,
        TPF_STATE_DIR=str(state_dir),
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_DYNAMODB=str(stack.endpoints.dynamodb),
        AWS_ENDPOINT_URL_SQS=str(stack.endpoints.sqs),
        AWS_ENDPOINT_URL_S3=str(stack.endpoints.s3),
        COLUMNS="400",  # whole ids in the tables, whatever terminal (or none) runs the tests
    )
    return env


def script(
    name: str, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(name: str, *args: str, env: dict[str, str]) -> Any:
    return json.loads(script(name, *args, "--json", env=env).stdout)


@pytest.fixture
def env(stack: TestStack, executions: Executions, tmp_path: Path) -> dict[str, str]:
    return operator_env(stack, tmp_path / "state")


# -- the scripts -----------------------------------------------------------------------------


def test_every_script_is_an_executable_python_script() -> None:
    for name in (
        "list-executions",
        "show-execution",
        "count-executions",
        "peek-dead-letters",
        "recent-transitions",
    ):
        path = SCRIPTS / name
        assert os.access(path, os.X_OK), path
        assert path.read_text().startswith("#!/usr/bin/env python3\n"), path


def test_executions_are_listed_by_status_and_pipeline(
    env: dict[str, str], executions: Executions
) -> None:
    every = as_json("list-executions", "--tenant", TENANT, env=env)
    assert {e["executionId"]: e["status"] for e in every} == {
        executions.succeeded: "SUCCEEDED",
        executions.failed: "FAILED",
        executions.waiting: "WAITING_EXTERNAL",
        executions.other_pipeline: "SUCCEEDED",
    }
    created = [e["createdAtEpochMs"] for e in every]
    assert created == sorted(created, reverse=True)

    [failed] = as_json("list-executions", "--tenant", TENANT, "--status", "FAILED", env=env)
    assert (failed["executionId"], failed["errorCode"]) == (executions.failed, "INVALID_ORDER")
    assert (failed["tenantId"], failed["pipelineId"]) == (TENANT, RESTAURANT)

    succeeded = as_json(
        "list-executions",
        "--tenant",
        TENANT,
        "--status",
        "SUCCEEDED",
        "--pipeline",
        RESTAURANT,
        env=env,
    )
    assert [e["executionId"] for e in succeeded] == [executions.succeeded]
    either = as_json(
        "list-executions",
        "--tenant",
        TENANT,
        "--status",
        "FAILED",
        "--status",
        "SUCCEEDED",
        env=env,
    )
    assert len(either) == 3
    other = as_json("list-executions", "--tenant", TENANT, "--pipeline", orders.id, env=env)
    coded = as_json("list-executions", "--tenant", TENANT, "--error-code", "INVALID_ORDER", env=env)
    assert [e["executionId"] for e in coded] == [executions.failed]
    assert [e["executionId"] for e in other] == [executions.other_pipeline]
    assert as_json("list-executions", "--tenant", "nobody", env=env) == []
    assert len(as_json("list-executions", "--tenant", TENANT, "--limit", "2", env=env)) == 2

    shown = script(
        "list-executions", "--tenant", TENANT, "--status", "WAITING_EXTERNAL", env=env
    ).stdout
    assert "1 execution(s)" in shown and executions.waiting in shown


def test_a_waiting_execution_shows_its_pending_interaction_and_history(
    env: dict[str, str], executions: Executions
) -> None:
    shown = as_json("show-execution", executions.waiting, "--tenant", TENANT, env=env)

    record = shown["execution"]
    assert (record["executionId"], record["status"]) == (executions.waiting, "WAITING_EXTERNAL")
    [unit] = shown["awaitUnits"]
    assert (unit["unitId"], unit["status"], unit["done"], unit["total"]) == (
        record["awaitUnitId"],
        "OPEN",
        0,
        1,
    )
    [interaction] = shown["interactions"]
    assert interaction["interactionId"] == executions.pending_interaction
    assert (interaction["stepId"], interaction["status"]) == (AWAIT_STEP, "PENDING")
    assert interaction["request"]["customerName"] == "Grace"
    history = shown["history"]
    assert [c["version"] for c in history] == list(range(record["version"] + 1))
    assert history[0]["previousStatus"] is None
    assert (history[-1]["previousStatus"], history[-1]["status"]) == (
        "RUNNING",
        "WAITING_EXTERNAL",
    )
    # Without the tenant the record is found by its id alone.
    assert as_json("show-execution", executions.waiting, env=env) == shown

    table = script("show-execution", executions.waiting, "--tenant", TENANT, env=env).stdout
    for heading in ("await units", "interactions", "history", executions.pending_interaction):
        assert heading in table


def test_a_finished_execution_shows_its_completed_interaction_on_request(
    env: dict[str, str], executions: Executions
) -> None:
    current = as_json("show-execution", executions.succeeded, "--tenant", TENANT, env=env)
    assert current["execution"]["status"] == "SUCCEEDED"
    assert current["execution"]["awaitUnitId"] is None
    assert (current["awaitUnits"], current["interactions"]) == ([], [])
    assert current["history"][-1]["status"] == "SUCCEEDED"
    statuses = {c["status"] for c in current["history"]}
    assert {"RUNNING", "WAITING_EXTERNAL", "SUCCEEDED"} <= statuses

    every = as_json("show-execution", executions.succeeded, "--all-awaits", env=env)
    [unit] = every["awaitUnits"]
    assert (unit["status"], unit["done"]) == ("COMPLETED", 1)
    [interaction] = every["interactions"]
    assert interaction["interactionId"] == executions.completed_interaction
    assert (interaction["status"], interaction["actor"]) == ("COMPLETED", "chef")
    assert interaction["response"]["accepted"]["note"] == "ok"


def test_an_unknown_execution_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    missing = str(uuid.uuid4())
    result = script("show-execution", missing, "--tenant", TENANT, env=env, check=False)

    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no execution {missing} for tenant {TENANT}"


def test_counts_by_status_overall_and_per_pipeline(
    env: dict[str, str], executions: Executions
) -> None:
    overall = as_json("count-executions", "--tenant", TENANT, env=env)
    assert overall == {"WAITING_EXTERNAL": 1, "SUCCEEDED": 2, "FAILED": 1}
    assert list(overall) == ["WAITING_EXTERNAL", "SUCCEEDED", "FAILED"]  # lifecycle order

    assert as_json("count-executions", "--tenant", TENANT, "--by-pipeline", env=env) == {
        orders.id: {"SUCCEEDED": 1},
        RESTAURANT: {"WAITING_EXTERNAL": 1, "SUCCEEDED": 1, "FAILED": 1},
    }
    assert as_json("count-executions", "--tenant", TENANT, "--pipeline", orders.id, env=env) == {
        "SUCCEEDED": 1
    }

    table = script("count-executions", "--tenant", TENANT, env=env).stdout
    assert "WAITING_EXTERNAL" in table and "total" in table
    capped = as_json("count-executions", "--tenant", TENANT, "--cap", "2", env=env)
    assert capped.pop("capped") is True and sum(capped.values()) == 2
    assert "3+" in script("count-executions", "--tenant", TENANT, "--cap", "3", env=env).stdout
    assert (
        RESTAURANT
        in script("count-executions", "--tenant", TENANT, "--by-pipeline", env=env).stdout
    )


def test_the_dead_letter_envelope_is_shown_and_left_in_place(
    env: dict[str, str], executions: Executions
) -> None:
    [first] = as_json("peek-dead-letters", env=env)

    assert first["queue"] == "dead-letters"
    envelope = first["envelope"]
    assert envelope["kind"] == "dead-letter"
    assert (envelope["executionId"], envelope["tenantId"]) == (executions.failed, TENANT)
    assert (envelope["status"], envelope["errorCode"]) == ("FAILED", "INVALID_ORDER")
    assert envelope["pipelineId"] == RESTAURANT

    [again] = as_json("peek-dead-letters", env=env)
    assert again["messageId"] == first["messageId"]
    assert again["receiveCount"] > first["receiveCount"]
    table = script("peek-dead-letters", env=env).stdout
    assert "1 dead letter(s)" in table and executions.failed in table


def test_recent_transitions_come_from_the_history_table_newest_first(
    env: dict[str, str], executions: Executions
) -> None:
    changes = as_json("recent-transitions", "--limit", "1000", env=env)

    assert all(c["atEpochMs"] >= executions.started_ms for c in changes)
    times = [c["atEpochMs"] for c in changes]
    assert times == sorted(times, reverse=True)
    assert {c["executionId"] for c in changes} == {
        executions.succeeded,
        executions.failed,
        executions.waiting,
        executions.other_pipeline,
    }
    [failure] = as_json("recent-transitions", "--status", "FAILED", env=env)
    assert (failure["executionId"], failure["previousStatus"]) == (executions.failed, "RUNNING")
    assert failure["errorCode"] == "INVALID_ORDER"
    assert len(as_json("recent-transitions", "--limit", "3", env=env)) == 3
    assert as_json("recent-transitions", "--since-minutes", "0", env=env) == []

    table = script("recent-transitions", "--status", "FAILED", env=env).stdout
    assert "1 change(s) since" in table and executions.failed in table


def test_the_stack_is_found_from_the_state_file_of_tpf_up(
    stack: TestStack, executions: Executions, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / f"{stack.settings.stack}.json").write_text(
        json.dumps(
            {
                "stack": stack.settings.stack,
                "substrate": "localstack",
                "endpoint_url": None,
                "endpoints": stack.endpoints.as_env(),
            }
        )
    )
    env = operator_env(stack, state_dir)
    for variable in list(env):
        if variable.startswith("AWS_ENDPOINT_URL"):
            del env[variable]

    assert as_json("count-executions", "--tenant", TENANT, env=env) == {
        "WAITING_EXTERNAL": 1,
        "SUCCEEDED": 2,
        "FAILED": 1,
    }


def test_without_an_endpoint_a_script_says_so_in_one_line(stack: TestStack, tmp_path: Path) -> None:
    env = operator_env(stack, tmp_path / "no-state")
    for variable in list(env):
        if variable.startswith("AWS_ENDPOINT_URL"):
            del env[variable]

    result = script("count-executions", "--tenant", TENANT, env=env, check=False)

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no embedded substrate is running for stack")
