"""The invariants checked at quiescence, from evidence the framework did not write itself.

* statuses, from the coordinator's API: every execution terminal, with the status its input
  asks for (``lost``, ``wrong_status``);
* the effect ledger and invocation logs, written by step code in the workers: one applied
  effect and one idempotency key per (execution, step) (``duplicated_effects``,
  ``missing_effects``), and how often steps re-ran (``duplicate_invocations``);
* the execution table: no deadline or transition key left on a terminal or parked record
  (``leftover_leases``);
* the coordinators' logs: late results rejected, deadlines taken over.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpfctl.chaos.load import Planned

STEPS = {"chaos.plain": 3, "chaos.fragile": 1}


@dataclass
class Evidence:
    planned: dict[str, Planned]
    """By execution id."""
    statuses: dict[str, dict[str, Any]]
    """The API's status body of every execution that has one."""
    records: list[dict[str, Any]]
    """Raw records from the table: ``status``, ``dueAtMs``, ``transitionKey``."""
    invocations: list[dict[str, Any]]
    effects: list[dict[str, Any]]
    coordinator_log_lines: Iterable[str]


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.violations.append(message)


def read_jsonl(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Lines of JSON; a line cut short by SIGKILL is skipped, not fatal."""
    entries = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def judge(evidence: Evidence, *, kills_in_flight: int, freezes_in_flight: int) -> Verdict:
    verdict = Verdict()
    planned, statuses = evidence.planned, evidence.statuses

    lost = [e for e in planned if statuses.get(e, {}).get("status") not in STATUSES_TERMINAL]
    wrong = [e for e in planned if e not in lost and statuses[e]["status"] != planned[e].expected]

    effects: Counter[tuple[str, int]] = Counter(
        (x["executionId"], x["step"]) for x in evidence.effects
    )
    keys: dict[tuple[str, int], set[str]] = defaultdict(set)
    runs: Counter[tuple[str, int]] = Counter()  # one transition may run several steps
    for inv in evidence.invocations:
        keys[(inv["executionId"], inv["step"])].add(inv["idempotencyKey"])
        runs[(inv["transitionKey"], inv["step"])] += 1
    duplicated = [k for k in set(effects) | set(keys) if effects[k] > 1 or len(keys[k]) > 1]
    missing = [
        (e, step)
        for e, p in planned.items()
        if statuses.get(e, {}).get("status") == "SUCCEEDED"
        for step in range(STEPS[p.pipeline_id])
        if effects[(e, step)] != 1
    ]
    leftover = [
        r["executionId"]
        for r in evidence.records
        if r["status"] in STATUSES_SETTLED and (r["dueAtMs"] is not None or r["transitionKey"])
    ]
    actions = Counter(entry.get("action") for entry in read_lines(evidence.coordinator_log_lines))
    duplicate_invocations = sum(n - 1 for n in runs.values())

    verdict.figures = {
        "executions": len(planned),
        "succeeded": sum(1 for s in statuses.values() if s["status"] == "SUCCEEDED"),
        "invocations": sum(runs.values()),
        "duplicate_invocations": duplicate_invocations,
        "lost": len(lost),
        "wrong_status": len(wrong),
        "duplicated_effects": len(duplicated),
        "missing_effects": len(missing),
        "leftover_leases": len(leftover),
        "late_results_rejected": actions["reject-result"],
        "deadline_takeovers": actions["timeout"],
    }
    verdict.require(not lost, f"not terminal: {lost[:5]}")
    verdict.require(
        not wrong,
        "wrong status: "
        + ", ".join(f"{e} {statuses[e]['status']}≠{planned[e].expected}" for e in wrong[:5]),
    )
    verdict.require(not duplicated, f"effects applied twice or under two keys: {duplicated[:5]}")
    verdict.require(not missing, f"succeeded without its effect: {missing[:5]}")
    verdict.require(not leftover, f"deadline or key left on a settled record: {leftover[:5]}")
    verdict.require(
        kills_in_flight == 0 or duplicate_invocations + actions["timeout"] > 0,
        "workers were killed mid-step but nothing was redelivered or taken over",
    )
    verdict.require(
        freezes_in_flight == 0 or actions["reject-result"] > 0,
        "workers were frozen mid-step but no late result was rejected",
    )
    return verdict


STATUSES_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "DLQ"})
STATUSES_SETTLED = STATUSES_TERMINAL | {"WAITING_EXTERNAL"}


def read_lines(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
