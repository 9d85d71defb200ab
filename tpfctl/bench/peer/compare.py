"""``tpf bench peer``: tpf's throughput rounds against Celery chains of the same pipeline.

What a Python team would otherwise pick for this pipeline is Celery on SQS. Each round sends
the throughput benchmark's batch of ``org.example.orders`` through tpf's fleet
(:func:`tpfctl.bench.throughput.framework_round`) and, right after, the same number of Celery
chains of the same three step functions on the same inputs through as many Celery worker
processes, each with tpf's worker concurrency in threads, over the same LocalStack SQS. Rounds
alternate so that both sides meet the shared machine's busy moments alike; medians are
reported. Both clocks run from the first submit to the last execution finished.

The comparison is not like for like in one direction only: tpf also writes a durable record
(and history) per execution, which Celery does not keep.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpfctl.bench import throughput
from tpfctl.bench.peer.result import PeerRound, Setup, Timed, line
from tpfctl.bench.session import LazySession, Measured, Options

EXTRA = "bench"
EXTRA_MODULES = ("celery", "kombu", "pycurl")
"""kombu's SQS transport receives through pycurl."""


def unavailable(options: Options) -> str | None:
    """Why the peer cannot run here, or None."""
    missing = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"Celery is a benchmark dependency: install the {EXTRA!r} extra "
            f"(pip install -e '.[{EXTRA}]'; missing: {', '.join(missing)})"
        )
    if options.substrate != "localstack":
        return "the peer runs on the LocalStack stack only: moto's SQS speed says nothing"
    return None


def run(bench: LazySession) -> list[dict[str, Any]]:
    options = bench.options
    why = unavailable(options)
    if why is not None:
        return [{"benchmark": "peer", "skipped": why}]
    # Only now: Celery is not installed unless the extra is.
    from tpfctl.bench.peer import chains

    session = bench.get()
    endpoint = session.stack.endpoints.sqs
    if endpoint is None:
        raise ConfigurationError("the peer needs the stack's SQS endpoint")
    setup = Setup(
        executions_per_round=options.throughput,
        workers=options.workers,
        threads_per_worker=Settings().worker_concurrency,
        submit_concurrency=options.concurrency,
    )
    shape = chains.Shape(setup.workers, setup.threads_per_worker, setup.submit_concurrency)
    rounds = []
    with chains.started(endpoint, session.workdir, shape) as peer:
        for number in range(1, options.rounds + 1):
            tpf = _timed(throughput.framework_round(session, f"peer-{number}"))
            celery = peer.run(f"r{number}", options.throughput)
            rounds.append(PeerRound(tpf, celery))
    return [line(rounds, setup)]


def _timed(measured: Measured) -> Timed:
    outcome, window = measured.outcome, measured.window
    by_role = [window.cpu_seconds(role) for role in ("coordinator", "worker")]
    return Timed(
        len(outcome.records),
        outcome.submitted_at,
        outcome.finished_at,
        outcome.statuses(),
        cpu_seconds=None if None in by_role else sum(s for s in by_role if s is not None),
    )
