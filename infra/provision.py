"""Make the live stack match ``infra.resources.describe``; remove it; say what exists.

::

    provision(settings)      create what is missing, fix what drifted     -> ProvisionReport
    provision_release(...)   the release-scoped resources of one release  -> ProvisionReport
    retire_release(...)      delete them again                            -> ProvisionReport
    teardown(settings)       delete exactly this stack's resources        -> ProvisionReport
    describe_live(settings)  what exists now                              -> JSON-able dict

Both ``provision`` and ``teardown`` are idempotent: a second run reports every resource
"unchanged" (or "absent") and writes nothing. Order matters: a dead-letter queue exists before
the redrive policy that names it, and a queue (with the policy that lets S3 send to it) before
the bucket notification that targets it.

Botocore errors are translated here, once, into ``ConfigurationError`` with a one-line message.
The per-kind details live in ``_tables``, ``_queues`` and ``_buckets``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from infra import _buckets, _queues, _tables
from infra.actions import Action
from infra.resources import WORK_QUEUE_PREFIX, Release, StackDescription, describe
from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpf.substrate import Endpoints, resolve_endpoints, sync_client

Kind = Literal["table", "queue", "bucket"]
CHANGES: frozenset[Action] = frozenset({"created", "updated", "deleted"})


@dataclass(frozen=True)
class ResourceChange:
    kind: Kind
    name: str
    """Logical name, as in ``infra.resources`` (dead-letter queues: ``<queue>-dlq``)."""
    physical: str
    action: Action
    details: tuple[str, ...] = ()
    """What was updated (attribute, index, lifecycle, ...)."""


@dataclass
class ProvisionReport:
    stack: str
    resources: list[ResourceChange] = field(default_factory=list)
    elapsed: float = 0.0
    """Seconds the whole run took."""

    @property
    def changed(self) -> bool:
        return any(r.action in CHANGES for r in self.resources)

    def actions(self) -> dict[str, Action]:
        """``{"<kind>:<logical name>": action}``, handy for assertions and logs."""
        return {f"{r.kind}:{r.name}": r.action for r in self.resources}

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.action] = counts.get(r.action, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "changed": self.changed,
            "elapsed_seconds": round(self.elapsed, 3),
            "resources": [{**asdict(r), "details": list(r.details)} for r in self.resources],
        }


# -- the edge: clients and error translation -----------------------------------------------


@dataclass(frozen=True)
class _Clients:
    endpoints: Endpoints
    dynamodb: Any
    sqs: Any
    s3: Any
    wait: float
    """Seconds to wait for a table or index to settle before giving up."""


def _clients(settings: Settings, endpoints: Endpoints | None) -> _Clients:
    endpoints = endpoints or resolve_endpoints(settings)
    made = {s: sync_client(settings, s, endpoints=endpoints) for s in ("dynamodb", "sqs", "s3")}
    wait = _tables.AWS_WAIT if settings.substrate == "aws" else _tables.EMULATOR_WAIT
    return _Clients(endpoints=endpoints, wait=wait, **made)


@contextmanager
def _edge(service: str, clients: _Clients, what: str) -> Iterator[None]:
    """Turn what botocore raises while working on ``what`` into one clear line."""
    url = clients.endpoints.for_service(service) or f"the AWS {service} endpoint"
    try:
        yield
    except (BotocoreConnectionError, HTTPClientError) as exc:
        raise ConfigurationError(
            f"cannot reach {service} at {url}: is the substrate running?"
        ) from exc
    except NoCredentialsError as exc:
        raise ConfigurationError(
            f"no AWS credentials for {service}: set AWS_PROFILE or AWS_ACCESS_KEY_ID"
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = " ".join(str(error.get("Message", "")).split())
        raise ConfigurationError(
            f"{service} {exc.operation_name} failed for {what}: {error.get('Code')}: {message}"
        ) from exc


# -- provision -----------------------------------------------------------------------------


def provision(
    settings: Settings, *, endpoints: Endpoints | None = None, releases: Iterable[Release] = ()
) -> ProvisionReport:
    """Create what is missing and fix what drifted, so the stack matches its description
    (with the release-scoped resources of ``releases``)."""
    started = time.monotonic()
    stack = describe(settings, releases=releases)
    clients = _clients(settings, endpoints)
    report = ProvisionReport(settings.stack)
    report.resources += _provision_tables(stack, clients)
    queue_rows, queue_arns = _provision_queues(stack, clients)
    report.resources += queue_rows
    report.resources += _provision_buckets(stack, clients, queue_arns)
    report.elapsed = time.monotonic() - started
    return report


def _release_scoped(settings: Settings, release: Release) -> StackDescription:
    stack = describe(settings, releases=[release])
    queues = tuple(q for q in stack.queues if q.release == release)
    return StackDescription(tables=(), queues=queues, buckets=(), settings=settings)


def provision_release(
    settings: Settings, release: Release, *, endpoints: Endpoints | None = None
) -> ProvisionReport:
    """Create the release-scoped resources of ``release`` (activation calls this first)."""
    started = time.monotonic()
    report = ProvisionReport(settings.stack)
    rows, _ = _provision_queues(_release_scoped(settings, release), _clients(settings, endpoints))
    report.resources += rows
    report.elapsed = time.monotonic() - started
    return report


def retire_release(
    settings: Settings, release: Release, *, endpoints: Endpoints | None = None
) -> ProvisionReport:
    """Delete the release-scoped resources of ``release``; the caller checked nothing needs them."""
    started = time.monotonic()
    stack = _release_scoped(settings, release)
    clients = _clients(settings, endpoints)
    report = ProvisionReport(settings.stack)
    for queue in stack.queues:
        for name in (queue.name, queue.dead_letter_name):
            physical = stack.physical(name)
            with _edge("sqs", clients, f"queue {physical}"):
                action = _queues.delete(clients.sqs, physical)
            report.resources.append(ResourceChange("queue", name, physical, action))
    report.elapsed = time.monotonic() - started
    return report


def _live_release_queues(settings: Settings, clients: _Clients) -> list[str]:
    """Logical names of the release-scoped queues that exist (their dead-letter queues too)."""
    prefix = settings.resource(WORK_QUEUE_PREFIX)
    with _edge("sqs", clients, f"queues {prefix}*"):
        pages = clients.sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix)
        urls = [url for page in pages for url in page.get("QueueUrls", [])]
    stack_prefix = settings.resource("")
    return sorted(url.rsplit("/", 1)[-1].removeprefix(stack_prefix) for url in urls)


def _provision_tables(stack: StackDescription, clients: _Clients) -> list[ResourceChange]:
    outcomes: dict[str, tuple[Action, list[str]]] = {}
    # Create every missing table first and wait afterwards: on AWS each takes seconds.
    for table in stack.tables:
        physical = stack.physical(table.name)
        with _edge("dynamodb", clients, f"table {physical}"):
            outcomes[table.name] = _tables.ensure(
                clients.dynamodb, table, physical, timeout=clients.wait
            )
    rows = []
    for table in stack.tables:
        physical = stack.physical(table.name)
        with _edge("dynamodb", clients, f"table {physical}"):
            _tables.wait_active(clients.dynamodb, physical, timeout=clients.wait)
            ttl = _tables.ensure_ttl(clients.dynamodb, table, physical)
        action, details = outcomes[table.name]
        if action == "unchanged" and ttl:
            action = "updated"
        shown = tuple(details + ttl) if action == "updated" else ()
        rows.append(ResourceChange("table", table.name, physical, action, shown))
    return rows


def _provision_queues(
    stack: StackDescription, clients: _Clients
) -> tuple[list[ResourceChange], dict[str, str]]:
    rows: list[ResourceChange] = []
    arns: dict[str, str] = {}
    for queue in stack.queues:
        physical = stack.physical(queue.name)
        dlq_physical = stack.physical(queue.dead_letter_name)
        with _edge("sqs", clients, f"queue {physical}"):
            dlq = _queues.ensure(clients.sqs, dlq_physical, _queues.dead_letter_attributes(queue))
            main = _queues.ensure(clients.sqs, physical, _queues.attributes(queue, dlq.arn))
            partition = main.arn.split(":")[1]
            senders = [
                f"arn:{partition}:s3:::{stack.physical(b.name)}"
                for b in stack.buckets
                if b.notification and b.notification.queue == queue.name
            ]
            policy = _queues.ensure_policy(clients.sqs, main, senders)
        action: Action = "updated" if main.action == "unchanged" and policy else main.action
        details = tuple(main.changes + policy) if action == "updated" else ()
        rows.append(ResourceChange("queue", queue.name, physical, action, details))
        rows.append(
            ResourceChange(
                "queue", queue.dead_letter_name, dlq_physical, dlq.action, tuple(dlq.changes)
            )
        )
        arns[queue.name] = main.arn
    return rows, arns


def _provision_buckets(
    stack: StackDescription, clients: _Clients, queue_arns: dict[str, str]
) -> list[ResourceChange]:
    rows = []
    for bucket in stack.buckets:
        physical = stack.physical(bucket.name)
        target = None
        if bucket.notification:
            target = queue_arns.get(bucket.notification.queue)
            if target is None:
                raise ConfigurationError(
                    f"bucket {bucket.name} notifies queue {bucket.notification.queue!r}, "
                    "which the stack does not declare"
                )
        with _edge("s3", clients, f"bucket {physical}"):
            action, details = _buckets.ensure(
                clients.s3, bucket, physical, region=stack.settings.region, queue_arn=target
            )
        shown = tuple(details) if action == "updated" else ()
        rows.append(ResourceChange("bucket", bucket.name, physical, action, shown))
    return rows


# -- teardown ------------------------------------------------------------------------------


def teardown(settings: Settings, *, endpoints: Endpoints | None = None) -> ProvisionReport:
    """Delete this stack's buckets (emptied first), queues and tables; nothing else."""
    started = time.monotonic()
    stack = describe(settings)
    clients = _clients(settings, endpoints)
    report = ProvisionReport(settings.stack)
    for bucket in stack.buckets:
        physical = stack.physical(bucket.name)
        with _edge("s3", clients, f"bucket {physical}"):
            action = _buckets.delete(clients.s3, physical)
        report.resources.append(ResourceChange("bucket", bucket.name, physical, action))
    queues = [n for q in stack.queues for n in (q.name, q.dead_letter_name)]
    for name in [*queues, *_live_release_queues(settings, clients)]:
        physical = stack.physical(name)
        with _edge("sqs", clients, f"queue {physical}"):
            action = _queues.delete(clients.sqs, physical)
        report.resources.append(ResourceChange("queue", name, physical, action))
    deleted = []
    for table in stack.tables:
        physical = stack.physical(table.name)
        with _edge("dynamodb", clients, f"table {physical}"):
            action = _tables.delete(clients.dynamodb, physical)
        report.resources.append(ResourceChange("table", table.name, physical, action))
        if action == "deleted":
            deleted.append(physical)
    # Wait, so that a provision right after a teardown creates fresh tables.
    for physical in deleted:
        with _edge("dynamodb", clients, f"table {physical}"):
            _tables.wait_gone(clients.dynamodb, physical, timeout=clients.wait)
    report.elapsed = time.monotonic() - started
    return report


# -- describe ------------------------------------------------------------------------------


def describe_live(settings: Settings, *, endpoints: Endpoints | None = None) -> dict[str, Any]:
    """What exists of the stack now, keyed by kind and logical name."""
    stack = describe(settings)
    clients = _clients(settings, endpoints)
    tables, queues, buckets = {}, {}, {}
    for table in stack.tables:
        physical = stack.physical(table.name)
        with _edge("dynamodb", clients, f"table {physical}"):
            tables[table.name] = _tables.live(clients.dynamodb, physical)
    names = [n for q in stack.queues for n in (q.name, q.dead_letter_name)]
    for name in [*names, *_live_release_queues(settings, clients)]:
        physical = stack.physical(name)
        with _edge("sqs", clients, f"queue {physical}"):
            queues[name] = _queues.live(clients.sqs, physical)
    for bucket in stack.buckets:
        physical = stack.physical(bucket.name)
        with _edge("s3", clients, f"bucket {physical}"):
            buckets[bucket.name] = _buckets.live(clients.s3, physical)
    return {
        "stack": settings.stack,
        "region": settings.region,
        "endpoints": {s: clients.endpoints.for_service(s) for s in ("dynamodb", "sqs", "s3")},
        "tables": tables,
        "queues": queues,
        "buckets": buckets,
    }
