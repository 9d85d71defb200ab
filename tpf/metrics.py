"""Prometheus metrics shared by every role, served as text on ``GET /q/metrics``.

Metric objects live at module level in the default registry, so any module records with one
import and one process (one-process mode runs both roles) exposes a single page. Label values are
low-cardinality on purpose: a role, an outcome, a failure category, pipeline and step ids; never an
execution id or a transition key.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Steps and transitions range from milliseconds to minutes (an await parks: timed on its own).
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Awaits: a provider answers in well under a second or a few minutes, a human in minutes to a day.
_AWAIT_SECONDS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1_800.0,
    3_600.0, 7_200.0, 14_400.0, 28_800.0, 43_200.0, 86_400.0,
)  # fmt: skip

# -- invocation runtime (tpf/runtime.py) -------------------------------------------------------

STEP_SECONDS = Histogram(
    "tpf_step_seconds",
    "Duration of one step invocation (one item of a per-item step).",
    ["pipeline", "step", "category"],
    buckets=_SECONDS,
)
TRANSITION_SECONDS = Histogram(
    "tpf_transition_seconds",
    "Duration of one transition, from loading its input to building its result.",
    ["pipeline", "category"],
    buckets=_SECONDS,
)
TRANSPORT_SECONDS = Histogram(
    "tpf_transport_seconds",
    "Duration of one call across a remote transport boundary.",
    ["protocol", "target", "category"],
    buckets=_SECONDS,
)

# -- both roles ----------------------------------------------------------------------------------

TRANSITIONS = Counter(
    "tpf_transitions",
    "Transitions finished, by the role that ran or committed them and their outcome.",
    ["role", "outcome"],
)
MESSAGES_REJECTED = Counter(
    "tpf_messages_rejected",
    "Queue messages refused without being acted on (malformed, bad signature, not hosted).",
    ["role", "queue", "reason"],
)
TRANSITIONS_DISPATCHED = Counter(
    "tpf_transitions_dispatched",
    "Transition commands sent to workers (first attempts, retries and re-drives).",
    ["channel"],
)
SUBMISSIONS_THROTTLED = Counter(
    "tpf_submissions_throttled",
    "Submissions answered 429 because their tenant was over its quota.",
)
SUBSTRATE_ERRORS = Counter(
    "tpf_substrate_errors",
    "Failed attempts of AWS calls (throttling, 5xx, dropped connections), retried or not.",
    ["service", "operation", "code"],
)
LOOP_RESTARTS = Counter(
    "tpf_loop_restarts",
    "Long-running loops of a replica that raised and were started again (should stay 0).",
    ["role", "loop"],
)
HEARTBEATS = Counter(
    "tpf_heartbeats",
    "Heartbeats sent or failed (worker); extended, not-needed or stale (coordinator).",
    ["role", "outcome"],
)
IN_FLIGHT = Gauge(
    "tpf_transitions_in_flight",
    "Transitions a process is running right now.",
    ["role"],
)


# -- coordinator ------------------------------------------------------------------------------

SUBMISSIONS = Counter("tpf_submissions", "Executions submitted.", ["duplicate"])
RESULTS_REJECTED = Counter(
    "tpf_results_rejected",
    "Results not committed: late (superseded key or version), duplicate, or unknown execution.",
    ["reason"],
)
RETRIES = Counter("tpf_retries", "Failed attempts scheduled for another try.", ["error_code"])
TERMINAL_FAILURES = Counter(
    "tpf_terminal_failures", "Executions that ended FAILED or DLQ.", ["status"]
)
SWEEPS = Counter("tpf_sweep_actions", "Actions the sweeper took on due work.", ["action"])
INGESTED = Counter(
    "tpf_ingested_objects_total",
    "Objects of S3 upload notifications: submitted, failed (to submit; redelivered) or ignored.",
    ["outcome"],
)
AWAIT_COMPLETIONS = Counter(
    "tpf_await_completions_total",
    "Await completions by outcome (recorded, duplicate, conflict, late).",
    ["outcome"],
)
AWAIT_SECONDS = Histogram(
    "tpf_await_seconds",
    "Time an await unit was open: from opening to its close as completed, timed_out or abandoned"
    " (the execution moved on: cancelled or re-driven).",
    ["pipeline", "step", "transport", "outcome"],
    buckets=_AWAIT_SECONDS,
)
QUEUE_DEPTH = Gauge(
    "tpf_queue_depth",
    "Messages in a queue, sampled (approximate on SQS): visible, in_flight (received, not yet"
    " deleted) or delayed (not yet deliverable).",
    ["queue", "state"],
)


def render() -> bytes:
    """The default registry in Prometheus text format (``CONTENT_TYPE``)."""
    return generate_latest(REGISTRY)


COMMANDS_REROUTED = Counter(
    "tpf_commands_rerouted",
    "Commands a worker of another release refused, sent again to their release's queue.",
    ["outcome"],
)
WORKER_REPORTS = Counter(
    "tpf_worker_presence_reports", "Signed worker presence reports recorded.", ["state"]
)
ADMISSIONS_REFUSED = Counter(
    "tpf_admissions_refused",
    "Submissions refused because no healthy worker of the pinned release exists.",
    ["pipeline"],
)
