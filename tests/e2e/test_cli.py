"""The real `tpf` command in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_until
from tpfctl.embedded import EmbeddedSubstrate
from tpfctl.lifeline import OWNER_ENV, alive, children_of

ROOT = Path(__file__).resolve().parents[2]


def tpf(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tpfctl", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "TPF_"))}
    env.update({"TPF_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200", **extra})
    env[OWNER_ENV] = str(os.getpid())  # what the test starts dies with the test run
    return env


def test_the_demo_runs_to_completion_and_reports_its_requests(tmp_path: Path) -> None:
    # About 15 s on an idle machine; a busy one may take several times that.
    done = tpf("demo", "--executions", "4", env=clean_env(tmp_path), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCEEDED") >= 4
    assert "per execution" in done.stdout


def test_commands_without_a_stack_fail_with_one_line(tmp_path: Path) -> None:
    for args in (["status", "x"], ["executions", "list"], ["infra", "describe"]):
        done = tpf(*args, env=clean_env(tmp_path))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_usage_errors_say_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    for args in (["submit"], ["redrive", "--rate", "x"], ["chaos-not-a-command"]):
        done = tpf(*args, env=clean_env(tmp_path))
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and "Error" in done.stderr, done.stderr


def test_up_serves_a_stack_that_other_commands_find(tmp_path: Path) -> None:
    env = clean_env(tmp_path, TPF_STACK="cli", TPF_PROFILE="test", TPF_API_PORT="0")
    env["TPF_API_PORT"] = str(_free_port())
    up = subprocess.Popen(
        [sys.executable, "-m", "tpfctl", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = tmp_path / "state" / "cli.json"
    try:
        wait_until(state.exists, timeout=60)
        order = '{"orderId":"o-9","amountCents":900,"customer":"Ada"}'
        submitted = tpf("submit", "org.example.orders", "-i", order, "--json", env=env)
        assert submitted.returncode == 0, submitted.stderr
        execution_id = json.loads(submitted.stdout)["executionId"]

        def succeeded() -> bool:
            done = tpf("status", execution_id, "--json", env=env)
            return done.returncode == 0 and json.loads(done.stdout)["status"] == "SUCCEEDED"

        wait_until(succeeded, timeout=60, interval=0.2)
        listed = tpf("executions", "list", "--status", "SUCCEEDED", "--json", env=env)
        assert execution_id in {r["executionId"] for r in json.loads(listed.stdout)}
        counted = tpf("executions", "count", "--pipeline", "org.example.orders", env=env)
        assert (
            counted.returncode == 0
            and int(counted.stdout.strip().rstrip("+").replace(",", "")) >= 1
        )
        refused = tpf("executions", "list", "--status", "RUNNING", "--error-code", "X", env=env)
        assert refused.returncode == 2 and "supported filters" in refused.stderr
        bad = tpf("submit", "org.example.orders", "-i", '{"orderId": 1}', env=env)
        assert bad.returncode == 2 and "400" in bad.stderr and "/inputPayload" in bad.stderr
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "control-plane token" in output  # generated and printed when unset
    assert not state.exists()


def start_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str], Path]:
    """`tpf up` in the background, its output in a file; returns once its state file exists."""
    env = clean_env(tmp_path, TPF_STACK="cli", TPF_PROFILE="test")
    env["TPF_API_PORT"] = str(_free_port())
    output = tmp_path / "up.out"
    with output.open("w") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "tpfctl", "up", *args],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    state = tmp_path / "state" / "cli.json"
    wait_until(lambda: state.exists() or up.poll() is not None, timeout=90)
    assert up.poll() is None, output.read_text()
    return up, env, output


def succeeds(env: dict[str, str], *, timeout: float = 60) -> str:
    """Submit an order through the CLI and wait until it has SUCCEEDED."""
    order = '{"orderId":"o-1","amountCents":100,"customer":"Ada"}'
    submitted = tpf("submit", "org.example.orders", "-i", order, "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    execution_id: str = json.loads(submitted.stdout)["executionId"]

    def succeeded() -> bool:
        done = tpf("status", execution_id, "--json", env=env)
        return done.returncode == 0 and json.loads(done.stdout)["status"] == "SUCCEEDED"

    wait_until(succeeded, timeout=timeout, interval=0.2)
    return execution_id


def test_a_sigkilled_up_leaves_none_of_its_processes_running(tmp_path: Path) -> None:
    up, _, output = start_up(tmp_path)
    children = children_of(up.pid)
    # A coordinator, two workers and the provider mock.
    assert len(children) == 4, (children, output.read_text())
    up.kill()
    up.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in children), timeout=10, interval=0.1)


def test_up_restarts_a_coordinator_that_died_and_serves_again(tmp_path: Path) -> None:
    up, env, output = start_up(tmp_path, "--workers", "1", "--no-provider-mock")
    try:
        [coordinator] = [
            pid
            for pid in children_of(up.pid)
            if b" coordinator" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        ]
        os.kill(coordinator, signal.SIGKILL)
        wait_until(lambda: "exited unexpectedly (signal 9)" in output.read_text(), timeout=15)
        api = json.loads((tmp_path / "state" / "cli.json").read_text())["api_url"]
        wait_until(lambda: ready(f"{api}/q/health/ready"), timeout=60, interval=0.2)
        succeeds(env, timeout=90)
        assert not alive(coordinator)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(timeout=10)
            pytest.fail(f"tpf up did not stop within 60 s of SIGINT:\n{output.read_text()}")
    said = output.read_text()
    assert "restarting it in" in said and "stopped in" in said, said
    assert up.returncode == 0, said


def test_roles_that_cannot_start_say_why_in_one_line(
    tmp_path: Path, moto_server: EmbeddedSubstrate
) -> None:
    tokens = {
        "TPF_CONTROL_PLANE_TOKEN": "c" * 16,
        "TPF_ADMIN_TOKEN": "a" * 16,
        "TPF_SIGNING_SECRET": "s",
        "TPF_STARTUP_WAIT_S": "0",  # an unreachable substrate is not waited for here
    }
    unreachable = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}
    unprovisioned = {"AWS_ENDPOINT_URL": moto_server.endpoint_url, "TPF_STACK": "never-made"}
    reachable = {"AWS_ENDPOINT_URL": moto_server.endpoint_url}
    kept_nowhere = "secretsmanager:tpf/never-made"
    cases = [
        (["coordinator"], unreachable, "cannot reach"),
        (["coordinator"], unprovisioned, "tpf infra up"),
        (["worker", "--pipeline", "examples.orders:orders"], unprovisioned, "tpf infra up"),
        (["worker", "--pipeline", "examples.orders:orders"], unreachable, "cannot reach"),
        (["coordinator"], {"TPF_PROFILE": "fast"}, "TPF_PROFILE"),
        (["coordinator"], {"TPF_DUE_SHARDS": "0"}, "TPF_DUE_SHARDS"),
        (["coordinator"], {"TPF_ADMIN_TOKEN": "", **reachable}, "TPF_ADMIN_TOKEN must be"),
        (["coordinator"], {"TPF_CONTROL_PLANE_TOKEN": "short", **reachable}, "must be at least"),
        (["coordinator"], {"TPF_ADMIN_TOKEN": kept_nowhere, **reachable}, kept_nowhere),
        (
            ["worker", "--pipeline", "examples.orders:orders"],
            {"TPF_SIGNING_KEY": kept_nowhere, **reachable},
            "Secrets Manager refused",
        ),
    ]
    for args, extra, said in cases:
        done = tpf(*args, env=clean_env(tmp_path, **(tokens | extra)), timeout=90)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and said in last, done.stderr


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    from tpfctl.stack import free_port

    return free_port()
