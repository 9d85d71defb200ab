"""The peer: ``org.example.orders`` as a Celery chain on kombu's ``sqs`` transport.

Only the peer benchmark imports this module (and the Celery workers it starts, through ``-A``):
Celery is a benchmark dependency, the ``bench`` extra, never a runtime one.

Celery's defaults, plus what SQS asks for: kombu's SQS transport as it comes (long polling,
prefetch), except that it asks LocalStack to keep connections as tpf's clients do
(:mod:`tpfctl.bench.peer.transport`); no result backend (nobody reads a chain's result: the
last step's output is the end), remote control and events off, since SQS has no broadcast. Workers
read their settings from the environment (:func:`worker_env`); the benchmark's own process
publishes through an app of its own (:func:`client`).

Completion is observed without a request: the chain's last task appends ``<execution id>
<epoch seconds>`` to its worker's own file once the step has run (tpf's clock stops at the
commit of the last result), and the peer pays for no result store it would not otherwise have.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from celery import Celery, chain
from celery.signals import worker_init, worker_ready

from tpfctl import lifeline
from tpfctl.bench.peer.steps import run_step

ENDPOINT_ENV = "TPF_PEER_SQS_ENDPOINT"
PREFIX_ENV = "TPF_PEER_QUEUE_PREFIX"
READY_FILE_ENV = "TPF_PEER_READY_FILE"
DONE_FILE_ENV = "TPF_PEER_DONE_FILE"

app = Celery("peer")


def credentials() -> tuple[str, str, str]:
    """Key, secret and region, as the stack's processes get them (emulators accept any)."""
    return (
        os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def settings(endpoint: str, queue_prefix: str, *, submit_lanes: int = 10) -> dict[str, Any]:
    url = urlsplit(endpoint)
    key, secret, region = credentials()
    # kombu takes the endpoint from the URL's host and port, the scheme from ``is_secure``.
    return {
        "broker_url": f"sqs://{quote(key, safe='')}:{quote(secret, safe='')}@{url.netloc}",
        # kombu's own sqs transport, keeping connections as tpf's clients do (see the module).
        "broker_transport": "tpfctl.bench.peer.transport:Transport",
        "broker_transport_options": {
            "region": region,
            "is_secure": url.scheme == "https",
            "queue_name_prefix": queue_prefix,
        },
        "broker_connection_retry_on_startup": True,
        # Publishing from several threads at once needs as many pooled connections.
        "broker_pool_limit": submit_lanes,
        "task_ignore_result": True,
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
    }


def client(endpoint: str, queue_prefix: str, *, submit_lanes: int) -> Celery:
    """An app of its own for the benchmark's process, which only publishes (by task name):
    each run's queue prefix gets fresh connections, closed with the app."""
    return Celery(
        "peer-client",
        set_as_current=False,
        config_source=settings(endpoint, queue_prefix, submit_lanes=submit_lanes),
    )


def worker_env(endpoint: str, queue_prefix: str, ready: Path, done: Path) -> dict[str, str]:
    return {
        ENDPOINT_ENV: endpoint,
        PREFIX_ENV: queue_prefix,
        READY_FILE_ENV: str(ready),
        DONE_FILE_ENV: str(done),
    }


if ENDPOINT_ENV in os.environ:  # a worker started by the benchmark
    app.conf.update(settings(os.environ[ENDPOINT_ENV], os.environ[PREFIX_ENV]))


@app.task(name="orders.validate")
def validate(order: Any, execution_id: str) -> Any:
    return run_step(0, order, execution_id)


@app.task(name="orders.price")
def price(order: Any, execution_id: str) -> Any:
    return run_step(1, order, execution_id)


@app.task(name="orders.confirm")
def confirm(order: Any, execution_id: str) -> Any:
    confirmation = run_step(2, order, execution_id)
    _record_done(execution_id)
    return confirmation


def submit(publisher: Celery, order: Any, execution_id: str) -> None:
    """One execution: validate | price | confirm, each step's output the next one's input."""
    chain(
        publisher.signature(validate.name, args=(order, execution_id)),
        publisher.signature(price.name, args=(execution_id,)),
        publisher.signature(confirm.name, args=(execution_id,)),
    ).apply_async()


_done_lock = threading.Lock()


def _record_done(execution_id: str) -> None:
    line = f"{execution_id} {time.time():.6f}\n"
    with _done_lock, open(os.environ[DONE_FILE_ENV], "a", encoding="utf-8") as done:
        done.write(line)


@worker_init.connect
def _follow_the_benchmark(**_: Any) -> None:
    # The benchmark owns this worker: when it ends, however it ends, so does the worker.
    lifeline.follow_owner()


@worker_ready.connect
def _say_ready(**_: Any) -> None:
    Path(os.environ[READY_FILE_ENV]).touch()
