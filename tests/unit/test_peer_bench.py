"""The peer benchmark's parts that need neither Celery nor a stack: the steps as the peer calls
them, the line it prints, when it skips, and that nothing but the peer itself loads Celery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tpfctl.bench.drive import plain_input
from tpfctl.bench.peer import compare
from tpfctl.bench.peer.result import PeerRound, Setup, Timed, line
from tpfctl.bench.peer.steps import STEP_IDS, run_step
from tpfctl.bench.session import Options

ROOT = Path(__file__).resolve().parents[2]
SETUP = Setup(executions_per_round=300, workers=2, threads_per_worker=8, submit_concurrency=16)


def timed(executions: int, seconds: float, status: str, cpu: float | None = 1.5) -> Timed:
    return Timed(executions, 1_000.0, 1_000.0 + seconds, {status: executions}, cpu_seconds=cpu)


def test_the_three_steps_hand_each_other_json_and_confirm_the_order() -> None:
    payload = plain_input(7)
    for index in range(len(STEP_IDS)):
        payload = run_step(index, payload, "r1-7")
    assert STEP_IDS == ("validate", "price", "confirm")
    assert payload == {
        "orderId": "b-7",
        "totalCents": 1_208,
        "summary": "order b-7 for Ada: 12.08 confirmed",
    }


def test_the_line_sets_the_median_rates_side_by_side_against_the_target() -> None:
    rounds = [
        PeerRound(timed(300, 10.0, "SUCCEEDED"), timed(300, 15.0, "COMPLETED")),
        PeerRound(timed(300, 6.0, "SUCCEEDED"), timed(300, 12.0, "COMPLETED")),
        PeerRound(timed(300, 7.5, "SUCCEEDED", cpu=6.0), timed(300, 20.0, "COMPLETED")),
    ]
    found = line(rounds, SETUP)
    assert found["tpf_executions_per_second"] == 40.0
    assert found["celery_executions_per_second"] == 20.0
    assert found["ratio"] == {"value": 2.0, "target": 1.5, "met": True}
    assert found["tpf"]["statuses"] == {"SUCCEEDED": 900}
    assert found["celery"]["statuses"] == {"COMPLETED": 900}
    assert found["celery"]["result_backend"] is None and found["celery"]["durable_record"] is None
    assert [r["ratio"] for r in found["by_round"]] == [1.5, 2.0, 2.667]
    assert found["cpu_ms_per_execution"] == {"tpf": 10.0, "celery": 5.0}
    assert (found["workers"], found["threads_per_worker"], found["rounds"]) == (2, 8, 3)
    json.dumps(found)  # printable as it is


def test_the_ratio_is_the_median_of_the_rounds_own_not_of_the_two_medians() -> None:
    # Rates 10/30, 20/10, 30/20: each round's pair shares the machine's load of the moment.
    rounds = [
        PeerRound(timed(300, 30.0, "SUCCEEDED"), timed(300, 10.0, "COMPLETED")),
        PeerRound(timed(300, 15.0, "SUCCEEDED"), timed(300, 30.0, "COMPLETED")),
        PeerRound(timed(300, 10.0, "SUCCEEDED"), timed(300, 15.0, "COMPLETED")),
    ]
    found = line(rounds, SETUP)
    assert found["tpf_executions_per_second"] == found["celery_executions_per_second"] == 20.0
    assert found["ratio"] == {"value": 1.5, "target": 1.5, "met": True}


def test_a_peer_as_fast_as_tpf_misses_the_target() -> None:
    found = line([PeerRound(timed(300, 13.0, "SUCCEEDED"), timed(300, 13.0, "COMPLETED"))], SETUP)
    assert found["ratio"] == {"value": 1.0, "target": 1.5, "met": False}


def test_without_proc_the_cpu_per_execution_is_left_out_rather_than_guessed() -> None:
    rounds = [PeerRound(timed(300, 8.0, "SUCCEEDED", cpu=None), timed(300, 9.0, "COMPLETED"))]
    assert line(rounds, SETUP)["cpu_ms_per_execution"] == {"tpf": None, "celery": 5.0}


def test_without_the_bench_extra_the_peer_skips_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compare.importlib.util, "find_spec", lambda name: None)
    why = compare.unavailable(Options())
    assert why is not None and "'bench' extra" in why and "celery" in why


def test_the_peer_skips_on_the_embedded_substrate_when_the_extra_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compare.importlib.util, "find_spec", lambda name: object())
    assert compare.unavailable(Options(substrate="localstack")) is None
    why = compare.unavailable(Options(substrate="embedded"))
    assert why is not None and "LocalStack" in why


def test_the_command_line_and_the_bench_suite_load_no_celery() -> None:
    # A fresh interpreter: the peer imports its Celery app only once it runs.
    probe = (
        "import json, sys; import tpfctl.cli, tpfctl.bench.suite; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert loaded & {"celery", "kombu"} == set()
    assert "tpfctl" in loaded
