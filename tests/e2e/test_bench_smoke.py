"""``tpf bench`` at a tiny size on the embedded substrate: every benchmark prints its JSON line,
with sane fields. Figures are not checked (moto's capacity and speed say nothing); shapes are."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND = ("-m", "tpfctl", "bench", "--substrate", "embedded", "--profile", "test")
TINY = (
    *("--batch", "3", "--sequential", "2", "--executions", "6", "--rounds", "1"),
    *("--latency", "3", "--csv-rows", "20", "--search-records", "300"),
)

# One stack serves every benchmark; starting and stopping it is most of the run.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lines() -> dict[str, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, *COMMAND, *TINY, "--concurrency", "4"],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, list[dict[str, Any]]] = {}
    for line in done.stdout.splitlines():
        entry = json.loads(line)
        found.setdefault(entry["benchmark"], []).append(entry)
    return found


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_every_benchmark_prints_json_lines_naming_itself_and_the_substrate(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    named = {"cost", "throughput", "coordinator_cpu", "latency", "csv", "search", "peer"}
    assert set(lines) == named
    assert all(e["substrate"] == "embedded" for entries in lines.values() for e in entries)


def test_cost_counts_requests_and_prices_both_pipelines_at_both_loads(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    by_pipeline = {e["pipeline"]: e for e in lines["cost"]}
    assert set(by_pipeline) == {"org.example.orders", "org.pipelineframework.restaurantapproval"}
    for pipeline, entry in by_pipeline.items():
        for load in ("marginal", "low_load"):
            profile = entry[load]
            assert profile["statuses"] == {"SUCCEEDED": profile["executions"]}
            assert profile["requests_per_execution"]["dynamodb"]["PutItem"] > 0
            assert profile["requests_per_execution"]["sqs"]["SendMessageBatch"] > 0
            assert profile["sqs_billed_chunks_per_execution"] > 0
            assert profile["transitions_per_execution"] >= 1
            assert profile["state_changes_per_execution"] >= 2
            assert set(profile["dynamodb"]["by_table_per_execution"]) >= {"executions"}
            assert profile["usd_per_million_executions"]["total"] > 0
            assert finite(entry["ratio_to_step_functions"][load])
        assert entry["step_functions_standard"]["usd_per_million"] > 0
        for target in entry["targets"].values():
            assert {"value", "target", "met"} <= set(target)
        if pipeline == "org.pipelineframework.restaurantapproval":
            assert entry["marginal"]["inbox"]["answers"] == entry["marginal"]["executions"]
            assert entry["step_functions_standard"]["state_transitions"] == 4
            assert "cost_vs_step_functions" in entry["targets"]


def test_cost_states_the_full_bill_and_where_tpf_breaks_even(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    by_pipeline = {e["pipeline"]: e for e in lines["cost"]}
    for pipeline, entry in by_pipeline.items():
        assert entry["prices"]["as_of"] and "unverified" in entry["prices"]
        bill = entry["bill"]
        assert bill["fixed_monthly_usd"] > 0 and bill["assumptions"]
        assert bill["fixed_monthly_usd"] == pytest.approx(
            sum(item["usd"] for item in bill["breakdown"].values()), abs=0.05
        )
        alternatives = entry["alternatives"]
        assert set(alternatives) == {
            "step_functions_standard",
            "step_functions_express",
            "lambda_durable_functions",
        }
        for name, alternative in alternatives.items():
            if not alternative.get("fits", True):
                continue
            for load in ("marginal", "low_load"):
                found = alternative["break_even"][load]
                above = found["tpf_cheaper_above_executions_per_month"]
                assert (above is None and found["never"]) or above > 0, (name, load)
        express = alternatives["step_functions_express"]
        if pipeline == "org.pipelineframework.restaurantapproval":
            assert express["fits"] is False and "5 minutes" in express["why"]
        else:
            assert express["fits"] is True and express["usd_per_million"] > 0


def test_throughput_is_set_against_a_ceiling_with_a_finite_efficiency(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    (entry,) = lines["throughput"]
    assert entry["executions_per_second"] > 0
    assert entry["ceiling"]["executions_per_second"] > 0
    assert entry["ceiling"]["processes"] == 3
    assert entry["ceiling"]["requests_per_execution"]["dynamodb"]["PutItem"] > 0
    assert entry["ceiling"]["not_replayed"] == []
    assert finite(entry["framework_efficiency"]["value"])
    assert entry["requests_per_execution"]["dynamodb"]["PutItem"] > 0
    assert [r["efficiency"] > 0 for r in entry["by_round"]] == [True]
    assert entry["transition_overhead_at_load"]["transitions"] == entry["executions_per_round"]


def test_coordinator_cpu_per_transition_is_set_against_the_bare_loop(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    (entry,) = lines["coordinator_cpu"]
    assert entry["transitions"] == entry["executions_per_round"] * entry["rounds"]
    assert entry["cpu_ms_per_transition"] > 0 and entry["bare_cpu_ms_per_transition"] > 0
    assert finite(entry["ratio"]["value"])
    own = entry["cpu_ms_per_transition"] - entry["bare_cpu_ms_per_transition"]
    assert abs(entry["framework_cpu_ms_per_transition"] - own) < 0.002


def test_latency_gives_percentiles_of_every_transition(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    (entry,) = lines["latency"]
    assert entry["transitions"] == entry["executions"] == 3
    overhead = entry["overhead_ms"]
    assert 0 <= overhead["p50"] <= overhead["p95"] <= overhead["p99"] <= overhead["max"]
    assert entry["to_result_sent_ms"]["p50"] is not None


def test_the_csv_benchmark_times_a_file_and_counts_requests_per_row(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    (entry,) = lines["csv"]
    assert (entry["rows"], entry["status"]) == (20, "SUCCEEDED")
    assert finite(entry["seconds"]) and entry["seconds"] > 0
    assert entry["requests_per_row"]["sqs"] > 0 and entry["requests_per_row"]["dynamodb"] > 0
    assert set(entry["wru_per_row"]) == {"table", "indexes"}


def test_the_search_benchmark_pages_through_filtered_searches_within_two_queries_a_page(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    (entry,) = lines["search"]
    assert (entry["records"], entry["requests"]) == (300, 50)
    assert 0 < entry["p50_ms"] <= entry["p95_ms"]
    # The shape of a page holds on any substrate; only the time does not.
    assert entry["max_queries_per_page"] <= 2
    assert entry["max_scanned_per_page"] <= entry["target"]["scanned_per_page"]
    assert entry["mean_executions_per_page"] > 0


def test_the_peer_says_why_it_does_not_run_on_the_embedded_substrate(
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    # Without the bench extra it names the extra; with it, the substrate (LocalStack only).
    (entry,) = lines["peer"]
    assert "bench" in entry["skipped"] or "LocalStack" in entry["skipped"]
    assert "tpf_executions_per_second" not in entry
