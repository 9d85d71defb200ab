"""``tpf infra`` as a user runs it: the real CLI in a subprocess against the embedded server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.resources import describe
from tests.substrates import unique_stack
from tpf.settings import Settings
from tpfctl.embedded import EmbeddedSubstrate

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any endpoint or TPF_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "TPF_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        TPF_STATE_DIR=str(tmp_path / "state"),
        **extra,
    )
    return env


def tpf(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tpfctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture
def stack_env(moto_server: EmbeddedSubstrate, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a fresh stack on the embedded server; `tpf infra down` afterwards."""
    env = _env(tmp_path, AWS_ENDPOINT_URL=moto_server.endpoint_url, TPF_STACK=unique_stack())
    yield env
    down = tpf("infra", "down", env=env)
    assert down.returncode == 0, down.stderr


def test_infra_up_twice_says_nothing_changed_the_second_time(stack_env: dict[str, str]) -> None:
    stack = stack_env["TPF_STACK"]

    first = tpf("infra", "up", env=stack_env)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    assert f"stack {stack} is up" in first.stdout

    second = tpf("infra", "up", env=stack_env)
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout
    assert second.stdout.rstrip().splitlines()[-1] == (
        f"nothing to change: stack {stack} is up to date"
    )


def test_infra_up_json_reports_every_resource(stack_env: dict[str, str]) -> None:
    result = tpf("infra", "up", "--json", env=stack_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["changed"] is True
    assert {r["action"] for r in report["resources"]} == {"created"}
    stack = describe(Settings(stack=stack_env["TPF_STACK"]))
    assert len(report["resources"]) == len(stack.tables) + 2 * len(stack.queues) + len(
        stack.buckets
    )


def test_infra_describe_json_prints_only_json_listing_the_tables(
    stack_env: dict[str, str],
) -> None:
    assert tpf("infra", "up", env=stack_env).returncode == 0

    result = tpf("infra", "describe", "--json", env=stack_env)

    assert result.returncode == 0, result.stderr
    live = json.loads(result.stdout)  # nothing but JSON on stdout
    declared = describe(Settings(stack=stack_env["TPF_STACK"])).tables
    assert set(live["tables"]) == {t.name for t in declared}
    for table in declared:
        assert live["tables"][table.name]["physical"] == f"{stack_env['TPF_STACK']}-{table.name}"
        assert live["tables"][table.name]["status"] == "ACTIVE"


def test_infra_describe_without_an_endpoint_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, TPF_STACK=unique_stack())
    # rich wraps stderr at 80 columns when it is not a terminal (see tpfctl.cli.main's printer).
    env["COLUMNS"] = "400"

    result = tpf("infra", "describe", env=env)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no embedded substrate is running")
    assert result.stdout == ""


def test_infra_template_prints_a_cloudformation_template_of_the_stack_without_a_substrate(
    tmp_path: Path,
) -> None:
    stack_name = unique_stack()

    result = tpf(
        "infra", "template", "--release", "1.0.0", env=_env(tmp_path, TPF_STACK=stack_name)
    )

    assert result.returncode == 0, result.stderr
    template = json.loads(result.stdout)  # nothing but JSON on stdout
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    stack = describe(Settings(stack=stack_name))
    named = {
        props.get("TableName") or props.get("QueueName") or props.get("BucketName")
        for props in (r.get("Properties", {}) for r in template["Resources"].values())
    }
    assert {stack.physical(t.name) for t in stack.tables} <= named
    assert {stack.physical(b.name) for b in stack.buckets} <= named
    assert {stack.physical(n) for q in stack.queues for n in (q.name, q.dead_letter_name)} <= named
    function = template["Resources"]["WorkerFunction"]["Properties"]
    assert function["Environment"]["Variables"]["TPF_RELEASE"] == "1.0.0"


def test_infra_template_with_a_bad_release_exits_2_with_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, TPF_STACK=unique_stack(), COLUMNS="400")

    result = tpf("infra", "template", "--release", "not a version", env=env)

    assert result.returncode == 2
    assert result.stderr.strip() == "error: release 'not a version' is not a version such as 1.0.0"
    assert result.stdout == ""


def test_register_activates_a_release_that_submit_then_pins(
    stack_env: dict[str, str], moto_server: EmbeddedSubstrate
) -> None:
    import asyncio

    from tpf.registry import Registry
    from tpf.registry.dynamodb import DynamoRegistryTable
    from tpf.substrate import open_clients, resolve_endpoints

    assert tpf("infra", "up", env=stack_env).returncode == 0
    done = tpf("register", "examples.orders:orders", "--release", "2.1.0", env=stack_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "registered org.example.orders 2.1.0 (active)"

    settings = Settings(stack=stack_env["TPF_STACK"], endpoint_url=moto_server.endpoint_url)

    async def active() -> str | None:
        async with open_clients(settings, endpoints=resolve_endpoints(settings)) as aws:
            table = DynamoRegistryTable(aws.dynamodb, settings.resource("registry"))
            release = await Registry(table).active_release("org.example.orders")
            return release.release_version if release else None

    assert asyncio.run(active()) == "2.1.0"
    unknown = tpf("register", "examples.orders:nope", env=stack_env)
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_one_process_mode_runs_executions_and_require_remote_worker_refuses_it(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The same artifact as coordinator and worker in one process; a separated deployment
    (``TPF_REQUIRE_REMOTE_WORKER=true``) refuses to start that way, and says so."""
    from tests.waiting import wait_until
    from tpfctl.stack import free_port

    port = free_port()
    env = {
        **stack_env,
        "TPF_PROFILE": "test",
        "TPF_SIGNING_SECRET": "s" * 32,
        "TPF_CONTROL_PLANE_TOKEN": "cp-token-" + "c" * 16,
        "TPF_ADMIN_TOKEN": "admin-token-" + "a" * 16,
        "TPF_API_PORT": str(port),
    }
    assert tpf("infra", "up", env=env).returncode == 0
    assert tpf("register", "examples.orders:orders", env=env).returncode == 0

    refused = tpf(
        "coordinator",
        "--in-process-pipeline",
        "examples.orders:orders",
        env={**env, "TPF_REQUIRE_REMOTE_WORKER": "true"},
    )
    assert refused.returncode == 2
    assert "refuses to run transitions in-process" in refused.stderr

    with (tmp_path / "one-process.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tpfctl", "coordinator", *ONE_PROCESS],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/tpf/control-plane/tenants/acme",
            headers={"Authorization": "Bearer cp-token-" + "c" * 16},
            timeout=10,
        ) as api:
            execution_id = wait_until(lambda: submit_order(api), timeout=60)
            wait_until(
                lambda: api.get(f"/executions/{execution_id}").json()["status"] == "SUCCEEDED",
                timeout=60,
            )
    finally:
        process.terminate()
        stopped = process.wait(timeout=30)
    assert stopped == 0, (tmp_path / "one-process.log").read_text()[-3000:]
    assert "topology: one-process" in (tmp_path / "one-process.log").read_text()


ONE_PROCESS = ("--in-process-pipeline", "examples.orders:orders")


def submit_order(api: httpx.Client) -> str | None:
    """Submit once the one-process coordinator listens and its worker is healthy."""
    import httpx

    order = '{"orderId": "o-1", "amountCents": 500, "customer": "Ada"}'
    body = {
        "pipelineId": "org.example.orders",
        "inputPayload": {"payloadTypeId": "O", "payload": order},
    }
    try:
        response = api.post("/executions", json=body)
    except httpx.HTTPError:
        return None  # not listening yet
    return str(response.json()["executionId"]) if response.status_code == 200 else None
