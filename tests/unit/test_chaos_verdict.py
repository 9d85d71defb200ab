"""The crash harness's verdict catches every violation it claims to check."""

from __future__ import annotations

from typing import Any

import pytest

from tpfctl.chaos.load import Planned
from tpfctl.chaos.pipelines import Job
from tpfctl.chaos.verdict import Evidence, judge


def planned(expected: str = "SUCCEEDED", pipeline: str = "chaos.plain") -> Planned:
    return Planned("k", pipeline, Job(name="x"), expected, "plain")


def invocation(step: int, *, key: str = "e:0", tk: str = "e:0:1") -> dict[str, Any]:
    return {
        "executionId": "e",
        "step": step,
        "idempotencyKey": f"{key}:{step}",
        "transitionKey": tk,
    }


def healthy(**overrides: Any) -> Evidence:
    fields: dict[str, Any] = {
        "planned": {"e": planned()},
        "statuses": {"e": {"status": "SUCCEEDED"}},
        "records": [
            {"executionId": "e", "status": "SUCCEEDED", "dueAtMs": None, "transitionKey": None}
        ],
        "invocations": [
            invocation(0),
            invocation(1, tk="e:1:1"),
            invocation(2, tk="e:1:1"),
            invocation(1, tk="e:1:1"),
        ],  # a redelivery re-ran step 1
        "effects": [{"executionId": "e", "step": s} for s in range(3)],
        "coordinator_log_lines": ['{"action": "reject-result"}', '{"action": "timeout"}', "noise"],
    }
    fields.update(overrides)
    return Evidence(**fields)


def test_a_clean_run_has_no_violations_and_counts_recovery() -> None:
    verdict = judge(healthy(), kills_in_flight=3, freezes_in_flight=1)
    assert verdict.violations == []
    assert verdict.figures["duplicate_invocations"] == 1
    assert verdict.figures["late_results_rejected"] == 1
    assert verdict.figures["deadline_takeovers"] == 1


@pytest.mark.parametrize(
    ("evidence", "violation"),
    [
        (healthy(statuses={"e": {"status": "RUNNING"}}), "not terminal"),
        (healthy(statuses={}), "not terminal"),
        (healthy(statuses={"e": {"status": "DLQ"}}), "wrong status"),
        (healthy(effects=[{"executionId": "e", "step": s} for s in (0, 1, 2, 2)]), "applied twice"),
        (healthy(invocations=[invocation(0), invocation(0, key="other")]), "two keys"),
        (healthy(effects=[{"executionId": "e", "step": 0}]), "without its effect"),
        (
            healthy(
                records=[
                    {"executionId": "e", "status": "SUCCEEDED", "dueAtMs": 5, "transitionKey": None}
                ]
            ),
            "left on a settled record",
        ),
    ],
)
def test_each_violation_is_reported(evidence: Evidence, violation: str) -> None:
    verdict = judge(evidence, kills_in_flight=0, freezes_in_flight=0)
    assert any(violation in v for v in verdict.violations), verdict.violations


def test_kills_without_any_recovery_mean_the_run_proved_nothing() -> None:
    quiet = healthy(
        invocations=[invocation(0), invocation(1, tk="e:1:1"), invocation(2, tk="e:1:1")],
        coordinator_log_lines=[],
    )
    assert judge(quiet, kills_in_flight=0, freezes_in_flight=0).violations == []
    [violation] = judge(quiet, kills_in_flight=2, freezes_in_flight=0).violations
    assert "taken over" in violation
    assert "no late result" in judge(quiet, kills_in_flight=0, freezes_in_flight=1).violations[0]
