"""The real `tpf` command in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.substrates import wait_until

ROOT = Path(__file__).resolve().parents[2]


def tpf(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tpf", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "TPF_"))}
    env.update({"TPF_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200", **extra})
    return env


def test_the_demo_runs_to_completion_and_reports_its_requests(tmp_path: Path) -> None:
    done = tpf("demo", "--executions", "4", env=clean_env(tmp_path), timeout=120)
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
        [sys.executable, "-m", "tpf", "up"],
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
        bad = tpf("submit", "org.example.orders", "-i", '{"orderId": 1}', env=env)
        assert bad.returncode == 2 and "400" in bad.stderr and "/inputPayload" in bad.stderr
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "control-plane token" in output  # generated and printed when unset
    assert not state.exists()


def _free_port() -> int:
    from tpf.stack import free_port

    return free_port()
