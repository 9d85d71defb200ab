"""The full bill's arithmetic, against figures worked out by hand at the dated list prices."""

from __future__ import annotations

import pytest

from tpf.settings import Settings
from tpfctl.bench.alternatives import break_even, lambda_durable, step_functions_express
from tpfctl.bench.bill import Deployment, fixed_monthly

RELEASES = [("org.example.orders", "1.0.0"), ("org.pipelineframework.restaurantapproval", "1.0.0")]
POLLS_PER_LOOP = 730 * 3600 / 20  # 131,400 empty receives a month for each 20 s long poll


def test_the_default_deployment_costs_what_its_parts_cost_by_hand() -> None:
    bill = fixed_monthly(Settings(), releases=RELEASES)
    parts = bill["breakdown"]
    # Two 0.25 vCPU / 0.5 GB tasks: 1,460 task-hours at 0.25 * 0.04048 + 0.5 * 0.004445.
    assert parts["coordinator_compute"] == {"task_hours": 1460, "usd": 18.02}
    assert parts["load_balancer"]["usd"] == pytest.approx(16.43)  # 730 h * 0.0225
    assert parts["secrets"]["usd"] == pytest.approx(1.20)
    # Three consumers on each of two replicas, and five Lambda pollers on each work queue.
    polls = parts["idle_long_polls"]
    assert (polls["coordinator_loops"], polls["lambda_pollers"]) == (6, 10)
    assert polls["sqs_requests"] == 16 * POLLS_PER_LOOP == 2_102_400
    assert polls["usd"] == pytest.approx(0.84)
    # Three queues and five dead-letter queues, every 15 s, on each replica.
    assert parts["queue_depth_samples"]["sqs_requests"] == 2 * 8 * 175_200
    # Two sweepers over eight shards every 5 s on each replica, half an RRU per empty query.
    assert parts["sweeps"]["dynamodb_queries"] == 2 * 2 * 8 * 525_600
    assert parts["sweeps"]["rru"] == 8_409_600
    assert parts["sweeps"]["usd"] == pytest.approx(1.05)
    assert parts["worker_presence"] == {"reports": 0, "usd": 0.0}
    # 18.02005 + 16.425 + 1.2 + 0.84096 + 1.12128 + 1.0512
    assert bill["fixed_monthly_usd"] == 38.66


def test_the_bill_prices_the_default_timings_even_when_the_bench_runs_the_test_profile() -> None:
    quick = fixed_monthly(Settings(profile="test"), releases=RELEASES)
    assert quick == fixed_monthly(Settings(), releases=RELEASES)


def test_more_due_shards_make_every_sweep_query_more_shards() -> None:
    wide = fixed_monthly(Settings(due_shards=16), releases=RELEASES)["breakdown"]["sweeps"]
    assert wide["dynamodb_queries"] == 2 * 2 * 16 * 525_600


def test_a_worker_process_polls_once_and_reports_its_presence_every_heartbeat() -> None:
    deployment = Deployment(lambda_pollers_per_mapping=0, worker_processes=1)
    parts = fixed_monthly(Settings(), releases=RELEASES, deployment=deployment)["breakdown"]
    assert parts["idle_long_polls"]["sqs_requests"] == 7 * POLLS_PER_LOOP
    # 175,200 reports: a send and a delete (0.80), a drain check (0.0625), a registry write
    # (0.625), per million.
    assert parts["worker_presence"]["reports"] == 175_200
    assert parts["worker_presence"]["usd"] == pytest.approx(0.26, abs=0.005)


def test_the_bill_states_its_assumptions() -> None:
    said = " ".join(fixed_monthly(Settings(), releases=RELEASES)["assumptions"])
    for assumption in ("730 hours", "0.25 vCPU / 0.5 GB Fargate", "5 event source pollers"):
        assert assumption in said
    assert "not counted" in said


def test_tpf_breaks_even_where_the_fixed_bill_is_paid_by_the_saving_per_execution() -> None:
    found = break_even(fixed_monthly_usd=38.66, tpf_usd_per_million=5.28, other_usd_per_million=75)
    # 38.66 / (75 - 5.28) per million = 554,503.7
    assert found == {"tpf_cheaper_above_executions_per_month": 554_504}


@pytest.mark.parametrize("other", [1.2083, 5.28])
def test_tpf_is_never_cheaper_than_an_alternative_that_costs_no_more_per_execution(
    other: float,
) -> None:
    found = break_even(
        fixed_monthly_usd=38.66, tpf_usd_per_million=5.28, other_usd_per_million=other
    )
    assert found["tpf_cheaper_above_executions_per_month"] is None
    assert "not the cheaper choice at any volume" in found["never"]


def test_express_bills_a_request_and_the_duration_rounded_up_at_64_mb() -> None:
    found = step_functions_express(seconds=0.164, awaits=0)
    # $1 per million requests + 0.2 s * 0.0625 GB * $0.06 / 3,600 per GB-second
    assert found == {
        "fits": True,
        "billed_seconds": 0.2,
        "billed_memory_mb": 64,
        "usd_per_million": 1.2083,
    }
    assert step_functions_express(seconds=0.3, awaits=0)["billed_seconds"] == 0.3


def test_a_pipeline_that_waits_for_a_human_does_not_fit_express() -> None:
    found = step_functions_express(seconds=0.5, awaits=1)
    assert found["fits"] is False and "5 minutes" in found["why"]
    assert "usd_per_million" not in found


def test_a_pipeline_longer_than_five_minutes_does_not_fit_express() -> None:
    assert step_functions_express(seconds=301, awaits=0)["fits"] is False


def test_a_durable_function_pays_per_operation_with_two_for_a_callback() -> None:
    found = lambda_durable(steps=3, awaits=1)
    assert (found["durable_operations"], found["lambda_invocations"]) == (5, 2)
    # 5 * $8 + 5 KB written at $0.25/GB + kept 14 days at $0.15/GB-month + 2 * $0.20, per million
    assert found["usd_per_million"] == pytest.approx(40 + 1.19209 + 0.33379 + 0.4, abs=1e-4)
