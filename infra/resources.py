"""Every resource of a stack, declared once.

The provisioner (``infra.provision``), the CloudFormation template and the tests all read this
description; nothing else names a table, queue or bucket. Names here are logical: the physical
name is ``<stack>-<name>`` (``Settings.resource``), so two stacks share one account or emulator.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from tpf.records import CREATED_AT, DUE_INDEX, DUE_SHARD, SEARCH_INDEX, SEARCH_LANE, WAKE_AT
from tpf.retention import EXECUTION_TTL
from tpf.settings import Settings

KeyType = Literal["S", "N", "B"]


@dataclass(frozen=True)
class Key:
    name: str
    type: KeyType = "S"


@dataclass(frozen=True)
class Index:
    """A global secondary index. Sparse when only some items carry its key attributes."""

    name: str
    partition_key: Key
    sort_key: Key | None = None
    projection: tuple[str, ...] | Literal["ALL", "KEYS_ONLY"] = "KEYS_ONLY"


@dataclass(frozen=True)
class Table:
    name: str
    partition_key: Key
    sort_key: Key | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = "ttl"
    purpose: str = ""


@dataclass(frozen=True)
class Queue:
    name: str
    visibility_timeout: timedelta
    max_receive_count: int = 5
    """Receives before SQS moves a message to ``<name>-dlq``; 1..1000."""
    retention: timedelta = timedelta(days=4)
    dead_letter_retention: timedelta = timedelta(days=14)
    purpose: str = ""
    release: tuple[str, str] | None = None
    """(pipeline id, version) of a release-scoped queue: created when the release is
    activated, and retired once no execution pinned to it may run again."""

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}-dlq"


@dataclass(frozen=True)
class Notification:
    """S3 object-created events for keys with ``suffix`` go to ``queue``."""

    queue: str
    suffix: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class Bucket:
    name: str
    expire_after: timedelta | None = None
    notification: Notification | None = None
    purpose: str = ""
    versioned: bool = False
    """Keep every version of an object: an overwrite cannot change what an execution reads."""


@dataclass(frozen=True)
class StackDescription:
    tables: tuple[Table, ...]
    queues: tuple[Queue, ...]
    buckets: tuple[Bucket, ...]
    settings: Settings = field(repr=False)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def queue(self, name: str) -> Queue:
        return next(q for q in self.queues if q.name == name)

    def bucket(self, name: str) -> Bucket:
        return next(b for b in self.buckets if b.name == name)

    def physical(self, name: str) -> str:
        return self.settings.resource(name)


# A filtered inbox Query narrows by the other filters (group, step, deadline) in the index, so a
# page holds only what it returns. An assignee is always the key when given, never a filter.
BY_ASSIGNEE_FILTERS = ("pg", "sid", "dl")
BY_GROUP_FILTERS = ("sid", "dl")

LAMBDA_VISIBILITY_FACTOR = 6
"""AWS's rule: the queue feeding a function hides a message at least 6x the function's timeout."""


WORK_QUEUE_PREFIX = "work-"


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit] or "x"


def work_queue(pipeline_id: str, release_version: str) -> str:
    """Logical name of the queue that carries the commands of one release of one pipeline.

    Readable (``work-orders-1-0-0-<hash>``: the pipeline id's last part and the version) and
    collision-free: the hash covers the whole pipeline id and version, so ``1.0.0`` and
    ``1-0-0``, or two pipelines whose ids end alike, still get different queues.
    """
    digest = hashlib.sha256(f"{pipeline_id}\x1f{release_version}".encode()).hexdigest()[:6]
    name = _slug(pipeline_id.rsplit(".", 1)[-1], 24)
    return f"{WORK_QUEUE_PREFIX}{name}-{_slug(release_version, 24)}-{digest}"


def work_visibility(settings: Settings) -> timedelta:
    # SQS must not redeliver a command while its worker still extends visibility. A Lambda
    # worker may run as long as a transition may without a heartbeat, and AWS wants a queue
    # that feeds a function to hide messages 6x its timeout. Long-running workers extend
    # visibility themselves, and a crashed one is taken over at the transition deadline, so
    # the longer default costs them nothing.
    t = settings.timings
    return max(t.visibility_timeout, LAMBDA_VISIBILITY_FACTOR * t.transition_timeout)


Release = tuple[str, str]
"""A release as the resources see it: (pipeline id, release version)."""


def release_queue(settings: Settings, release: Release) -> Queue:
    pipeline_id, version = release
    return Queue(
        work_queue(pipeline_id, version),
        work_visibility(settings),
        purpose=f"transition commands for workers of {pipeline_id} {version}",
        release=release,
    )


def describe(settings: Settings, *, releases: Iterable[Release] = ()) -> StackDescription:
    """The stack's resources, with the release-scoped work queue of each of ``releases``."""
    t = settings.timings
    # The results consumer commits in well under the visibility timeout.
    visibility = t.visibility_timeout
    return StackDescription(
        settings=settings,
        tables=(
            Table(
                "executions",
                Key("pk"),
                indexes=(
                    # Keys only, by wake time: a sweeper reads the record it acts on anyway, and
                    # a change of state writes the index only when it moves the wake time.
                    Index(DUE_INDEX, Key(DUE_SHARD), Key(WAKE_AT, "N"), projection="KEYS_ONLY"),
                    # Keys only: a search reads the page's records with one BatchGetItem, so no
                    # change of state but a move between lanes ever writes this index.
                    Index(SEARCH_INDEX, Key(SEARCH_LANE), Key(CREATED_AT, "N")),
                ),
                purpose="one record per execution; every change a conditional write",
            ),
            Table(
                "history",
                Key("pk"),
                Key("sk", "N"),
                purpose="small per-execution history of state changes",
            ),
            Table(
                "payloads",
                Key("pk"),
                purpose="immutable small payloads written once (claim checks)",
            ),
            Table(
                "awaits",
                Key("pk"),
                Key("sk"),
                indexes=(
                    Index("pending", Key("pp"), Key("ps"), projection="ALL"),
                    # Sparse: only waiting inbox interactions naming an assignee or a group.
                    # The filters a Query may add ride along; the page's items are read after.
                    Index("pending-assignee", Key("pa"), Key("ps"), projection=BY_ASSIGNEE_FILTERS),
                    Index("pending-group", Key("pg"), Key("ps"), projection=BY_GROUP_FILTERS),
                    Index("correlation", Key("cid"), projection="KEYS_ONLY"),
                ),
                purpose="await units and their interactions",
            ),
            Table(
                "registry",
                Key("pk"),
                Key("sk"),
                purpose="contracts, releases, activations and workers",
            ),
        ),
        queues=(
            Queue("results", visibility, purpose="results and heartbeats from workers"),
            Queue("ingest", visibility, purpose="S3 events for the CSV inbox"),
            Queue("await-requests", visibility, purpose="await requests for providers"),
            Queue("await-completions", visibility, purpose="await completions from providers"),
            Queue("dead-letters", visibility, purpose="envelopes of terminally failed executions"),
            *(release_queue(settings, v) for v in dict.fromkeys(releases)),
        ),
        buckets=(
            Bucket(
                "payloads",
                expire_after=EXECUTION_TTL + timedelta(days=1),
                purpose="payloads too large for DynamoDB or SQS",
            ),
            Bucket(
                "inbox",
                expire_after=EXECUTION_TTL + timedelta(days=1),
                notification=Notification("ingest", suffix=".csv"),
                purpose="CSV uploads; each object starts one execution",
                versioned=True,
            ),
            Bucket("outbox", expire_after=EXECUTION_TTL + timedelta(days=1), purpose="CSV results"),
            Bucket("releases", purpose="release artifacts"),
        ),
    )
