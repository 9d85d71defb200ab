"""Cost per execution, from the requests the fleet's processes made, at list prices.

For each pipeline two loads: a batch submitted at once (the marginal cost: SQS and history
writes batch, idle polls vanish among the work) and executions one at a time (low load: every
request carries one message, and the idle polls in between count). Beside them the same
pipeline on Step Functions Standard, and the ratio; then the full bill: the deployment's fixed
monthly cost (``bill``) and, against Step Functions Standard and Express and Lambda durable
functions (``alternatives``), the volume above which tpf is the cheaper choice, or that it never
is.
"""

from __future__ import annotations

from typing import Any

from infra.resources import describe
from tpf.loading import load_pipeline
from tpf.pipeline import Pipeline, StepKind
from tpfctl.bench.alternatives import break_even, lambda_durable, step_functions_express
from tpfctl.bench.bill import fixed_monthly
from tpfctl.bench.drive import APPROVAL, PLAIN, Load
from tpfctl.bench.prices import (
    LIST_PRICES,
    price_table_json,
    s3_requests,
    step_functions_standard,
    usd_per_million,
)
from tpfctl.bench.session import LazySession, Measured
from tpfctl.bench.targets import at_most, ratio

PIPELINES = {
    PLAIN: "examples.orders:orders",
    APPROVAL: "examples.restaurant_approval:restaurant_approval",
}


def per(value: float, executions: int) -> float:
    return round(value / executions, 3)


def profile(measured: Measured, stack_name: str) -> dict[str, Any]:
    """Requests, capacity and dollars per execution over one measured load."""
    n = len(measured.outcome.records)
    ledger = measured.window.ledger()
    ddb = ledger["dynamodb"]
    requests: dict[str, dict[str, int]] = ledger["requests"]
    s3_put, s3_get = s3_requests(requests.get("s3", {}))
    wru = ddb["wru"]["table"] + ddb["wru"]["indexes"]
    rru = ddb["rru"]["table"] + ddb["rru"]["indexes"]
    prefix = f"{stack_name}-"
    by_table = {
        name.removeprefix(prefix): {k: per(v, n) for k, v in counters.items()}
        for name, counters in ddb.get("by_table", {}).items()
    }
    return {
        "executions": n,
        "statuses": measured.outcome.statuses(),
        "wall_seconds": round(measured.window.seconds, 2),
        "state_changes_per_execution": per(measured.outcome.state_changes, n),
        "transitions_per_execution": per(measured.transitions, n),
        "requests_per_execution": {
            service: {op: per(count, n) for op, count in sorted(ops.items()) if count}
            for service, ops in sorted(requests.items())
        },
        "requests_total_per_execution": per(sum(sum(o.values()) for o in requests.values()), n),
        "sqs_billed_chunks_per_execution": per(ledger["sqs"]["billed_chunks"], n),
        "dynamodb": {
            "wru_per_execution": {k: per(v, n) for k, v in ddb["wru"].items()},
            "rru_per_execution": {k: per(v, n) for k, v in ddb["rru"].items()},
            "failed_conditional_writes_per_execution": per(ddb["failed_conditional_writes"], n),
            "by_table_per_execution": by_table,
            "by_operation_per_execution": {
                name.removeprefix(prefix): {k: per(v, n) for k, v in sorted(counters.items())}
                for name, counters in ddb.get("by_operation", {}).items()
            },
        },
        "s3": {"put_per_execution": per(s3_put, n), "get_per_execution": per(s3_get, n)},
        "inbox": {"lists": measured.outcome.inbox_lists, "answers": measured.outcome.inbox_answers},
        "usd_per_million_executions": usd_per_million(
            sqs_billed_requests=ledger["sqs"]["billed_chunks"] / n,
            wru=wru / n,
            rru=rru / n,
            failed_conditional_writes=ddb["failed_conditional_writes"] / n,
            s3_put=s3_put / n,
            s3_get=s3_get / n,
        ),
    }


def unsplit_index_tables(by_table: dict[str, dict[str, float]], stack_settings: Any) -> list[str]:
    """Tables with indexes whose writes reported no index share: they asked for
    ``ReturnConsumedCapacity=TOTAL``, so their index WRU is inside the table figure."""
    indexed = {t.name for t in describe(stack_settings).tables if t.indexes}
    return sorted(
        name
        for name, c in by_table.items()
        if name in indexed and c.get("wru_table", 0) > 0 and not c.get("wru_indexes", 0)
    )


def targets(
    marginal: dict[str, Any],
    cost_ratio: float,
    *,
    unsplit: list[str],
    approval: bool,
    exact: bool,
) -> dict[str, Any]:
    tables = marginal["dynamodb"]["by_table_per_execution"]
    base = tables.get("executions", {}).get("wru_table", 0.0)
    indexes = sum(c.get("wru_indexes", 0.0) for c in tables.values())
    transitions = marginal["transitions_per_execution"]
    found = {
        "base_table_wru_per_state_change": at_most(
            ratio(base, marginal["state_changes_per_execution"]), 1.0
        ),
        "index_wru_per_transition": {
            **at_most(ratio(indexes, transitions), 2.0),
            "by_table": {
                name: round(ratio(c["wru_indexes"], transitions), 3)
                for name, c in tables.items()
                if c.get("wru_indexes")
            },
        },
    }
    if unsplit:
        found["index_wru_per_transition"]["excludes"] = [f"{t} indexes (TOTAL)" for t in unsplit]
    if approval:
        found["cost_vs_step_functions"] = at_most(cost_ratio, 0.1)
    if not exact:
        for target in found.values():
            target.update(met=None, unjudged="the substrate's consumed capacity is not reliable")
    return found


def shape(pipeline_id: str) -> tuple[int, int]:
    """(steps, awaits among them) of a reference pipeline."""
    pipeline: Pipeline = load_pipeline(PIPELINES[pipeline_id])
    return len(pipeline.steps), sum(1 for s in pipeline.steps if s.kind is StepKind.AWAIT)


def step_functions_for(pipeline_id: str) -> dict[str, Any]:
    """Every step is a state; an await is a ``.waitForTaskToken`` task whose token a human
    inbox keeps in DynamoDB (one write)."""
    steps, awaits = shape(pipeline_id)
    return step_functions_standard(states_entered=steps, inbox_writes=awaits)


def alternatives(
    pipeline_id: str,
    fixed_monthly_usd: float,
    loads: dict[str, dict[str, Any]],
    sfn: dict[str, Any],
) -> dict[str, Any]:
    """Each alternative's cost per execution and where tpf's fixed bill breaks even with it,
    at both loads' cost per execution. Express is timed by one execution alone (low load)."""
    steps, awaits = shape(pipeline_id)
    low_load = loads["low_load"]
    found: dict[str, dict[str, Any]] = {
        "step_functions_standard": {"usd_per_million": sfn["usd_per_million"]},
        "step_functions_express": step_functions_express(
            seconds=low_load["wall_seconds"] / low_load["executions"], awaits=awaits
        ),
        "lambda_durable_functions": lambda_durable(steps=steps - awaits, awaits=awaits),
    }
    for alternative in found.values():
        if alternative.get("fits", True):
            alternative["break_even"] = {
                load: break_even(
                    fixed_monthly_usd=fixed_monthly_usd,
                    tpf_usd_per_million=measured["usd_per_million_executions"]["total"],
                    other_usd_per_million=alternative["usd_per_million"],
                )
                for load, measured in loads.items()
            }
    return found


def run(bench: LazySession) -> list[dict[str, Any]]:
    session = bench.get()
    options, stack = bench.options, session.stack
    releases = [(pipeline_id, stack.settings.release) for pipeline_id in PIPELINES]
    bill = fixed_monthly(stack.settings, releases=releases)
    lines = []
    for pipeline_id in PIPELINES:
        tag = "plain" if pipeline_id == PLAIN else "approval"
        batch = Load(
            pipeline_id,
            tenant=f"cost-{tag}-batch",
            executions=options.batch,
            concurrency=options.concurrency,
        )
        marginal = profile(session.measure(batch), stack.settings.stack)
        one_by_one = Load(
            pipeline_id,
            tenant=f"cost-{tag}-single",
            executions=options.sequential,
            one_at_a_time=True,
        )
        low_load = profile(session.measure(one_by_one), stack.settings.stack)
        sfn = step_functions_for(pipeline_id)
        ratios = {
            "marginal": _ratio(marginal, sfn),
            "low_load": _ratio(low_load, sfn),
        }
        exact = options.substrate != "embedded"  # moto's consumed capacity is not reliable
        tables = marginal["dynamodb"]["by_table_per_execution"]
        unsplit = unsplit_index_tables(tables, stack.settings) if exact else []
        lines.append(
            {
                "benchmark": "cost",
                "pipeline": pipeline_id,
                "capacity_exact": exact,
                "prices": price_table_json(LIST_PRICES),
                "marginal": marginal,
                "low_load": low_load,
                "step_functions_standard": sfn,
                "ratio_to_step_functions": ratios,
                "bill": bill,
                "alternatives": alternatives(
                    pipeline_id,
                    bill["fixed_monthly_usd"],
                    {"marginal": marginal, "low_load": low_load},
                    sfn,
                ),
                "targets": targets(
                    marginal,
                    ratios["marginal"],
                    unsplit=unsplit,
                    approval=pipeline_id == APPROVAL,
                    exact=exact,
                ),
            }
        )
    return lines


def _ratio(profile: dict[str, Any], sfn: dict[str, Any]) -> float:
    return round(ratio(profile["usd_per_million_executions"]["total"], sfn["usd_per_million"]), 4)
