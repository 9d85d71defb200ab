"""The crash harness, small, as CI runs it: it must pass, and it must have exercised recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_until
from tpfctl.lifeline import alive, children_of

ROOT = Path(__file__).resolve().parents[2]
RUN_LIMIT_S = 420
"""What a small run may take: about a minute on an idle 2-core machine, twice that beside a
CPU-bound process, and its quiescence timeout (240 s) is inside this. The runs are small so CI
stays short; ``scripts/chaos`` at its defaults is the big run."""


def harness(*args: str) -> list[str]:
    return [str(ROOT / "scripts" / "chaos"), *args]


@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_a_small_crash_run_loses_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    done = subprocess.run(
        harness(
            *("--executions", "40", "--kills", "6", "--freezes", "2"),
            *("--duplicate-rate", "0.05", "--timeout", "240", "--workdir", str(tmp_path)),
        ),
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, report["violations"]
    assert report["violations"] == []
    assert (report["executions"], report["kills"], report["freezes"]) == (40, 6, 2)
    assert report["lost"] == report["wrong_status"] == report["duplicated_effects"] == 0
    assert report["duplicate_invocations"] + report["deadline_takeovers"] > 0
    # Every death was one the harness caused: no member crashed on its own and was restarted.
    assert report["unexpected_restarts"] == 0


@pytest.mark.timeout(180)
def test_a_sigkilled_harness_leaves_none_of_its_processes_running(tmp_path: Path) -> None:
    with (tmp_path / "harness.err").open("w") as err:
        run = subprocess.Popen(
            harness("--executions", "200", "--kills", "0", "--workdir", str(tmp_path)),
            env={**os.environ, "PYTHON": sys.executable},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

    def whole_fleet() -> list[int]:  # two coordinators and three workers
        members = children_of(run.pid)
        return members if len(members) == 5 else []

    try:
        fleet = wait_until(whole_fleet, timeout=90)
        # Under load: submissions are flowing when the harness dies.
        wait_until(lambda: "submitted" in (tmp_path / "harness.err").read_text(), timeout=90)
    finally:
        run.kill()
        run.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in fleet), timeout=10, interval=0.1)


def faulty_run(tmp_path: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        harness(*args, "--timeout", "240", "--workdir", str(tmp_path)),
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["violations"] == [], report["violations"]
    assert report["lost"] == report["wrong_status"] == report["duplicated_effects"] == 0
    assert report["unexpected_restarts"] == report["loop_restarts"] == 0
    return report


@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_a_misbehaving_substrate_loses_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    report = faulty_run(
        tmp_path,
        *("--executions", "30", "--kills", "3", "--freezes", "1"),
        *("--throttle-rate", "0.05", "--error-rate", "0.02", "--latency-rate", "0.02"),
        *("--drop-rate", "0.01", "--blackouts", "1", "--blackout-seconds", "5"),
    )
    faults = report["substrate_faults"]
    assert isinstance(faults, dict)
    for kind in ("throttle", "latency", "drop", "blackout"):
        assert faults.get(kind, 0) > 0, (kind, faults)
    assert faults.get("error", 0) + faults.get("error_after_change", 0) > 0, faults


@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_dynamodb_local_restarting_mid_run_loses_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("localstack_stack")  # skips (or fails under CI) without the stack
    report = faulty_run(
        tmp_path,
        *("--substrate", "localstack", "--executions", "20", "--kills", "2", "--freezes", "0"),
        *("--throttle-rate", "0.02", "--dynamodb-restarts", "1", "--blackouts", "1"),
        *("--blackout-seconds", "4"),
    )
    faults = report["substrate_faults"]
    assert isinstance(faults, dict) and faults["dynamodb_restart"] == 1, faults
