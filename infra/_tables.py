"""DynamoDB tables: create what is missing, converge indexes, billing and TTL, delete, describe.

A table's key schema cannot change in place; a table whose keys differ from the description is
an error, never silently replaced (it holds executions). Indexes are derived data, so an index
whose keys or projection drifted is dropped and rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from infra.actions import Action
from infra.resources import Index, Key, Table
from tpf.errors import ConfigurationError

ON_DEMAND = "PAY_PER_REQUEST"
AWS_WAIT = 900.0
"""A GSI backfill on real AWS takes minutes; emulators finish at once or (see below) never."""
EMULATOR_WAIT = 60.0
_INDEX_HINT = (
    "; if this is DynamoDB Local: it does not finish index changes to an existing table while "
    "any table has TTL enabled, so delete the table and provision again"
)


# -- the desired shape ---------------------------------------------------------------------


def _key_schema(partition: Key, sort: Key | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition.name, "KeyType": "HASH"}]
    if sort:
        schema.append({"AttributeName": sort.name, "KeyType": "RANGE"})
    return schema


def _projection(index: Index) -> dict[str, Any]:
    if isinstance(index.projection, tuple):
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(index.projection)}
    return {"ProjectionType": index.projection}


def _index_request(index: Index) -> dict[str, Any]:
    return {
        "IndexName": index.name,
        "KeySchema": _key_schema(index.partition_key, index.sort_key),
        "Projection": _projection(index),
    }


def _attribute_definitions(table: Table, indexes: set[str] | None = None) -> list[dict[str, str]]:
    """Types of the table's key attributes and of those of ``indexes`` (default: all)."""
    keys = [table.partition_key, table.sort_key]
    for index in table.indexes:
        if indexes is None or index.name in indexes:
            keys += [index.partition_key, index.sort_key]
    types = {key.name: key.type for key in keys if key}
    return [{"AttributeName": name, "AttributeType": t} for name, t in sorted(types.items())]


def create_request(table: Table, physical: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": physical,
        "BillingMode": ON_DEMAND,
        "KeySchema": _key_schema(table.partition_key, table.sort_key),
        "AttributeDefinitions": _attribute_definitions(table),
    }
    if table.indexes:
        request["GlobalSecondaryIndexes"] = [_index_request(i) for i in table.indexes]
    return request


# -- comparing with what exists -------------------------------------------------------------


def _typed_keys(schema: list[dict[str, str]], types: dict[str, str]) -> list[str]:
    return [
        f"{k['AttributeName']}:{types.get(k['AttributeName'], '?')}:{k['KeyType']}" for k in schema
    ]


def _shape(index: dict[str, Any], types: dict[str, str]) -> tuple[list[str], str, list[str]]:
    projection = index.get("Projection", {})
    return (
        _typed_keys(index["KeySchema"], types),
        projection.get("ProjectionType", "ALL"),
        sorted(projection.get("NonKeyAttributes", [])),
    )


def _desired_types(table: Table) -> dict[str, str]:
    return {d["AttributeName"]: d["AttributeType"] for d in _attribute_definitions(table)}


def _current_types(current: dict[str, Any]) -> dict[str, str]:
    return {d["AttributeName"]: d["AttributeType"] for d in current.get("AttributeDefinitions", [])}


def billing_mode(current: dict[str, Any]) -> str:
    summary = current.get("BillingModeSummary") or {}
    if summary.get("BillingMode"):
        return str(summary["BillingMode"])
    # Some emulators omit the summary; on-demand tables report zero provisioned throughput.
    throughput = current.get("ProvisionedThroughput") or {}
    return ON_DEMAND if not throughput.get("ReadCapacityUnits") else "PROVISIONED"


# -- converging ----------------------------------------------------------------------------


def read(client: Any, physical: str) -> dict[str, Any] | None:
    """The table's description, or None when it does not exist (or is being deleted)."""
    try:
        table: dict[str, Any] = client.describe_table(TableName=physical)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    return None if table.get("TableStatus") == "DELETING" else table


def ensure(
    client: Any, table: Table, physical: str, *, timeout: float = AWS_WAIT
) -> tuple[Action, list[str]]:
    """Create the table (without waiting) or converge an existing one; TTL comes after."""
    current = read(client, physical)
    if current is None:
        client.create_table(**create_request(table, physical))
        return "created", []
    desired_keys = _typed_keys(create_request(table, physical)["KeySchema"], _desired_types(table))
    current_keys = _typed_keys(current["KeySchema"], _current_types(current))
    if desired_keys != current_keys:
        raise ConfigurationError(
            f"table {physical} has key {current_keys} but the stack declares {desired_keys}; "
            "a table's key cannot change in place: delete the table to recreate it"
        )
    changes: list[str] = []
    if billing_mode(current) != ON_DEMAND:
        wait_active(client, physical, timeout=timeout)
        client.update_table(TableName=physical, BillingMode=ON_DEMAND)
        changes.append("billing mode")
    changes += _converge_indexes(client, table, physical, current, timeout)
    return ("updated" if changes else "unchanged"), changes


def _converge_indexes(
    client: Any, table: Table, physical: str, current: dict[str, Any], timeout: float
) -> list[str]:
    desired = {i.name: i for i in table.indexes}
    desired_types = _desired_types(table)
    existing = {i["IndexName"]: i for i in current.get("GlobalSecondaryIndexes", [])}
    current_types = _current_types(current)
    changes: list[str] = []
    # DynamoDB allows one index creation or deletion per UpdateTable, on an ACTIVE table.
    for name, index in existing.items():
        wanted = desired.get(name)
        if index.get("IndexStatus") == "DELETING":
            # Deleted by someone else: let it go, then (re)create it below if declared.
            _wait_index_gone(client, physical, name, timeout)
            continue
        if wanted and _shape(index, current_types) == _shape(_index_request(wanted), desired_types):
            continue
        wait_active(client, physical, timeout=timeout)
        client.update_table(
            TableName=physical, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": name}}]
        )
        _wait_index_gone(client, physical, name, timeout)
        changes.append(f"index {name} {'rebuilt' if wanted else 'removed'}")
    for name, wanted in desired.items():
        present = _index_names(client, physical)
        if name in present:
            continue
        wait_active(client, physical, timeout=timeout)
        client.update_table(
            TableName=physical,
            # Only attributes that some key will use: AWS rejects unused definitions.
            AttributeDefinitions=_attribute_definitions(table, present | {name}),
            GlobalSecondaryIndexUpdates=[{"Create": _index_request(wanted)}],
        )
        if not any(c.startswith(f"index {name} ") for c in changes):
            changes.append(f"index {name} created")
    return changes


def _wait_index_gone(client: Any, physical: str, name: str, timeout: float) -> None:
    _wait(
        lambda: name not in _index_names(client, physical),
        f"index {physical}.{name} to be deleted{_INDEX_HINT}",
        timeout,
    )


def _index_names(client: Any, physical: str) -> set[str]:
    current = read(client, physical) or {}
    return {i["IndexName"] for i in current.get("GlobalSecondaryIndexes", [])}


def ensure_ttl(client: Any, table: Table, physical: str) -> list[str]:
    """Enable TTL on the declared attribute (the table must be ACTIVE)."""
    description = client.describe_time_to_live(TableName=physical).get("TimeToLiveDescription", {})
    status = description.get("TimeToLiveStatus", "DISABLED")
    attribute = description.get("AttributeName")
    enabled = status in ("ENABLED", "ENABLING")
    if enabled and attribute == table.ttl_attribute:
        return []
    if enabled:
        client.update_time_to_live(
            TableName=physical,
            TimeToLiveSpecification={"Enabled": False, "AttributeName": attribute},
        )
    if table.ttl_attribute:
        client.update_time_to_live(
            TableName=physical,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
    return ["ttl"] if enabled or table.ttl_attribute else []


def delete(client: Any, physical: str) -> Action:
    if read(client, physical) is None:
        return "absent"
    try:
        client.delete_table(TableName=physical)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return "absent"
    return "deleted"


# -- waiting -------------------------------------------------------------------------------


def _wait(done: Callable[[], bool], what: str, timeout: float) -> None:
    # boto3's waiters poll every 20 s, which would make every emulator run slow.
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not done():
        if time.monotonic() > deadline:
            raise ConfigurationError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _active(client: Any, physical: str) -> bool:
    current = read(client, physical)
    if current is None or current["TableStatus"] != "ACTIVE":
        return False
    return all(i["IndexStatus"] == "ACTIVE" for i in current.get("GlobalSecondaryIndexes", []))


def wait_active(client: Any, physical: str, *, timeout: float = AWS_WAIT) -> None:
    what = f"table {physical} and its indexes to be ACTIVE"
    current = read(client, physical) or {}
    if any(i["IndexStatus"] != "ACTIVE" for i in current.get("GlobalSecondaryIndexes", [])):
        what += _INDEX_HINT
    _wait(lambda: _active(client, physical), what, timeout)


def wait_gone(client: Any, physical: str, *, timeout: float = AWS_WAIT) -> None:
    def gone() -> bool:
        try:
            client.describe_table(TableName=physical)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return True
            raise
        return False

    _wait(gone, f"table {physical} to be deleted", timeout)


# -- describing ----------------------------------------------------------------------------


def live(client: Any, physical: str) -> dict[str, Any]:
    current = read(client, physical)
    if current is None:
        return {"physical": physical, "exists": False}
    types = _current_types(current)
    ttl = client.describe_time_to_live(TableName=physical).get("TimeToLiveDescription", {})
    return {
        "physical": physical,
        "exists": True,
        "status": current["TableStatus"],
        "billing_mode": billing_mode(current),
        "key_schema": _typed_keys(current["KeySchema"], types),
        "indexes": {
            i["IndexName"]: {
                "status": i.get("IndexStatus"),
                "key_schema": _typed_keys(i["KeySchema"], types),
                "projection": i.get("Projection", {}).get("ProjectionType"),
                "non_key_attributes": sorted(i.get("Projection", {}).get("NonKeyAttributes", [])),
            }
            for i in current.get("GlobalSecondaryIndexes", [])
        },
        "ttl": {
            "status": ttl.get("TimeToLiveStatus", "DISABLED"),
            "attribute": ttl.get("AttributeName"),
        },
        "item_count": current.get("ItemCount", 0),
    }
