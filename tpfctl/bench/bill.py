"""The fixed monthly bill: what a deployment costs with no execution at all.

A deployment runs whether or not anything is submitted: coordinator replicas on their compute,
the load balancer in front of them, the stack's secrets, every consumer's long poll coming back
empty, the queue-depth sampler and the sweepers' queries of the due indexes. The request counts
follow from the deployment's shape (``infra.resources.describe``) and the timings of the
``default`` profile, so a change of an interval changes the bill.

What it leaves out, said in every bill: the compute of the steps themselves (every alternative
pays it too), networking (NAT gateway or VPC endpoints and public addresses depend on the
account), CloudWatch Logs (an idle replica writes next to nothing) and stored data (it grows
with volume and retention, not with time alone).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.role import DEPTH_INTERVAL_S
from infra.resources import Release, describe
from tpf.settings import Settings, Timings
from tpfctl.bench.prices import LIST_PRICES, MILLION, PriceTable

HOURS_PER_MONTH = 730
"""AWS's own month for hourly prices (8,760 hours / 12)."""
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600

COORDINATOR_CONSUMERS = ("results", "ingest", "await-completions")
"""The queues every replica long-polls (``coordinator.role.serve``). Await requests go to
providers, which are the operator's own processes and not counted."""
COORDINATOR_SAMPLED = ("results", "ingest", "await-completions")
"""The queues whose depth every replica samples, besides every dead-letter queue."""
SWEEPERS = 2
"""The execution sweeper and the await sweeper: each queries every due shard every interval."""
EVENTUAL_READ_RRU = 0.5
"""An eventually consistent read of up to 4 KB, even a Query that finds nothing."""


@dataclass(frozen=True)
class Deployment:
    """What is priced. The workers are the Lambda function ``infra.template`` deploys, fed by
    one event source mapping per release work queue; the coordinator, which the template leaves
    to the operator, is small Fargate tasks behind one load balancer."""

    coordinator_replicas: int = 2
    replica_vcpu: float = 0.25
    replica_memory_gb: float = 0.5
    load_balancers: int = 1
    secrets: int = 3
    """The signing key and the two API tokens (``infra._secrets``)."""
    lambda_pollers_per_mapping: int = 5
    """Lambda long-polls an idle queue with five pollers (and may drop to two); AWS bills those
    receives to the account as SQS requests."""
    worker_processes: int = 0
    """Long-running ``tpf worker`` processes, each hosting one pipeline: instead of (or beside)
    the Lambda worker, each long-polls its work queue and reports its presence."""


def fixed_monthly(
    settings: Settings,
    *,
    releases: Iterable[Release],
    deployment: Deployment = Deployment(),
    prices: PriceTable = LIST_PRICES,
) -> dict[str, Any]:
    """The bill of ``deployment`` over a month with no execution, item by item."""
    timings = production_timings(settings)
    stack = describe(settings, releases=releases)
    work_queues = sum(1 for q in stack.queues if q.release is not None)
    # Every queue has a dead-letter queue; a replica samples those of the stack's own queues.
    dead_letter_queues = len(describe(settings).queues)
    replicas = deployment.coordinator_replicas
    polls_per_loop = SECONDS_PER_MONTH / timings.long_poll.total_seconds()
    sweeps_per_loop = SECONDS_PER_MONTH / timings.sweep_interval.total_seconds()
    reports_per_worker = SECONDS_PER_MONTH / timings.heartbeat_interval.total_seconds()

    task_hour = (
        deployment.replica_vcpu * prices.fargate_per_vcpu_hour
        + deployment.replica_memory_gb * prices.fargate_per_gb_hour
    )
    coordinator_loops = replicas * len(COORDINATOR_CONSUMERS)
    lambda_pollers = work_queues * deployment.lambda_pollers_per_mapping
    idle_polls = (coordinator_loops + lambda_pollers + deployment.worker_processes) * polls_per_loop
    sampled = replicas * (len(COORDINATOR_SAMPLED) + dead_letter_queues)
    samples = sampled * SECONDS_PER_MONTH / DEPTH_INTERVAL_S
    queries = replicas * SWEEPERS * settings.due_shards * sweeps_per_loop
    # A report is one SendMessage and a drain check (GetItem) by the worker, and a delete and a
    # registry write by the coordinator; the receive that brings it replaces an empty one.
    reports = deployment.worker_processes * reports_per_worker
    per_report = (
        2 * prices.sqs_per_million_requests
        + EVENTUAL_READ_RRU * prices.dynamodb_per_million_rru
        + prices.dynamodb_per_million_wru
    ) / MILLION

    items = {
        "coordinator_compute": {
            "task_hours": replicas * HOURS_PER_MONTH,
            "usd": replicas * HOURS_PER_MONTH * task_hour,
        },
        "load_balancer": {
            "hours": deployment.load_balancers * HOURS_PER_MONTH,
            "usd": deployment.load_balancers * HOURS_PER_MONTH * prices.load_balancer_per_hour,
        },
        "secrets": {
            "secrets": deployment.secrets,
            "usd": deployment.secrets * prices.secrets_manager_per_secret_month,
        },
        "idle_long_polls": {
            "coordinator_loops": coordinator_loops,
            "lambda_pollers": lambda_pollers,
            "worker_processes": deployment.worker_processes,
            "sqs_requests": idle_polls,
            "usd": idle_polls * prices.sqs_per_million_requests / MILLION,
        },
        "queue_depth_samples": {
            "sqs_requests": samples,
            "usd": samples * prices.sqs_per_million_requests / MILLION,
        },
        "sweeps": {
            "dynamodb_queries": queries,
            "rru": queries * EVENTUAL_READ_RRU,
            "usd": queries * EVENTUAL_READ_RRU * prices.dynamodb_per_million_rru / MILLION,
        },
        "worker_presence": {"reports": reports, "usd": reports * per_report},
    }
    return {
        "fixed_monthly_usd": round(sum(item["usd"] for item in items.values()), 2),
        "breakdown": {name: _rounded(item) for name, item in items.items()},
        "assumptions": assumptions(deployment, settings, work_queues=work_queues),
    }


def production_timings(settings: Settings) -> Timings:
    """The ``default`` profile's timings: a bench may run the ``test`` profile to be quick, but
    a deployment polls and sweeps at production intervals."""
    return settings.model_copy(update={"profile": "default"}).timings


def assumptions(deployment: Deployment, settings: Settings, *, work_queues: int) -> list[str]:
    timings = production_timings(settings)
    replicas = deployment.coordinator_replicas
    return [
        f"{HOURS_PER_MONTH} hours a month, us-east-1 on-demand list prices, no free tier",
        f"{replicas} coordinator replicas, each a {deployment.replica_vcpu} vCPU / "
        f"{deployment.replica_memory_gb} GB Fargate task (Linux/x86), behind "
        f"{deployment.load_balancers} application load balancer",
        f"every replica long-polls {', '.join(COORDINATOR_CONSUMERS)} "
        f"({timings.long_poll.total_seconds():g} s wait), samples the depth of "
        f"{len(COORDINATOR_SAMPLED)} queues and every dead-letter queue every "
        f"{DEPTH_INTERVAL_S:g} s, and runs {SWEEPERS} sweepers over {settings.due_shards} due "
        f"shards every {timings.sweep_interval.total_seconds():g} s "
        f"({EVENTUAL_READ_RRU} RRU per empty query)",
        f"workers on Lambda: {work_queues} release work queues, each polled by "
        f"{deployment.lambda_pollers_per_mapping} event source pollers when idle, billed as SQS "
        "requests; their presence is the mapping's state, which costs nothing to read",
        f"{deployment.worker_processes} long-running worker processes (each would add a long "
        f"poll and a presence report every {timings.heartbeat_interval.total_seconds():g} s)",
        "not counted: the steps' own compute (every alternative pays it), networking (NAT "
        "gateway or VPC endpoints, public addresses), CloudWatch Logs, stored data",
    ]


def _rounded(item: dict[str, Any]) -> dict[str, Any]:
    """Dollars to the cent, counts to the unit."""
    return {k: round(v, 2) if k == "usd" else round(v) for k, v in item.items()}
