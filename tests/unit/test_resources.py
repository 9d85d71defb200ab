"""The stack description is sound before anything is provisioned.

AWS rejects bad names and limits only at create time, one resource at a time; these checks
catch them for every profile and for the longest stack name ``Settings`` accepts.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta

import pytest

from infra.resources import StackDescription, describe
from tpf.retention import EXECUTION_TTL
from tpf.settings import PROFILES, Settings

LONGEST_STACK = "s" + "x" * 30  # Settings.stack: ^[a-z][a-z0-9-]{1,30}$
SHORTEST_STACK = "ab"

SQS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
DYNAMODB_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
S3_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _stack(stack: str, profile: str = "default") -> StackDescription:
    return describe(Settings(stack=stack, profile=profile))  # type: ignore[arg-type]


@pytest.fixture(params=sorted(PROFILES))
def longest(request: pytest.FixtureRequest) -> StackDescription:
    return _stack(LONGEST_STACK, request.param)


def test_the_longest_stack_name_is_accepted_by_settings() -> None:
    assert len(LONGEST_STACK) == 31
    assert Settings(stack=LONGEST_STACK).stack == LONGEST_STACK


def test_every_notification_targets_a_declared_queue(longest: StackDescription) -> None:
    queues = {q.name for q in longest.queues}
    for bucket in longest.buckets:
        if bucket.notification:
            assert bucket.notification.queue in queues, bucket.name


def test_logical_names_are_unique_within_each_kind(longest: StackDescription) -> None:
    queue_names = [q.name for q in longest.queues] + [q.dead_letter_name for q in longest.queues]
    for names in (
        [t.name for t in longest.tables],
        queue_names,
        [b.name for b in longest.buckets],
    ):
        assert len(names) == len(set(names)), names


def test_every_queue_and_its_dead_letter_queue_fit_sqs_name_limits(
    longest: StackDescription,
) -> None:
    for queue in longest.queues:
        for name in (queue.name, queue.dead_letter_name):
            physical = longest.physical(name)
            assert SQS_NAME.match(physical), f"{physical} ({len(physical)} chars)"


def test_queue_timings_and_redrive_counts_are_within_sqs_limits(
    longest: StackDescription,
) -> None:
    for queue in longest.queues:
        assert timedelta(0) <= queue.visibility_timeout <= timedelta(hours=12), queue.name
        assert 1 <= queue.max_receive_count <= 1000, queue.name
        for retention in (queue.retention, queue.dead_letter_retention):
            assert timedelta(minutes=1) <= retention <= timedelta(days=14), queue.name
        # A dead letter must outlive the message it was: SQS keeps a moved message's
        # original enqueue time, so a shorter DLQ retention would drop it early.
        assert queue.dead_letter_retention >= queue.retention, queue.name


@pytest.mark.parametrize("stack", [SHORTEST_STACK, LONGEST_STACK])
def test_table_and_index_names_fit_dynamodb_name_limits(stack: str) -> None:
    description = _stack(stack)
    for table in description.tables:
        assert DYNAMODB_NAME.match(description.physical(table.name)), table.name
        for index in table.indexes:
            assert DYNAMODB_NAME.match(index.name), f"{table.name}.{index.name}"


def test_gsi_projections_name_no_key_attributes(longest: StackDescription) -> None:
    for table in longest.tables:
        for index in table.indexes:
            if not isinstance(index.projection, tuple):
                continue
            keys = {table.partition_key.name, index.partition_key.name}
            keys |= {k.name for k in (table.sort_key, index.sort_key) if k}
            assert index.projection, f"{table.name}.{index.name} projects nothing"
            assert not keys & set(index.projection), f"{table.name}.{index.name}"
            assert len(set(index.projection)) == len(index.projection)


def test_each_key_attribute_has_one_type_per_table(longest: StackDescription) -> None:
    for table in longest.tables:
        keys = [table.partition_key, table.sort_key]
        for index in table.indexes:
            keys += [index.partition_key, index.sort_key]
        types: dict[str, set[str]] = {}
        for key in filter(None, keys):
            types.setdefault(key.name, set()).add(key.type)
        assert all(len(t) == 1 for t in types.values()), (table.name, types)


@pytest.mark.parametrize("stack", [SHORTEST_STACK, LONGEST_STACK])
def test_bucket_names_are_valid_s3_names(stack: str) -> None:
    description = _stack(stack)
    for bucket in description.buckets:
        physical = description.physical(bucket.name)
        assert S3_NAME.match(physical), f"{physical} ({len(physical)} chars)"
        assert ".." not in physical
        assert not physical.startswith(("xn--", "sthree-"))
        assert not physical.endswith(("-s3alias", "--ol-s3", "--x-s3"))
        with pytest.raises(ValueError):
            ipaddress.ip_address(physical)


def test_payloads_outlive_the_executions_that_reference_them(longest: StackDescription) -> None:
    for name in ("payloads", "inbox", "outbox"):
        expiry = longest.bucket(name).expire_after
        assert expiry is not None, name
        assert expiry >= EXECUTION_TTL, name
    assert longest.table("executions").ttl_attribute
