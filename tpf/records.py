"""The execution record: one DynamoDB item per execution, written only by the coordinator.

Attribute names in DynamoDB are short and values compact so the worst-case item stays under
1 KB, which makes every state change cost exactly one WRU. ``to_item`` / ``from_item`` are the
only places that know the short names.
"""

from __future__ import annotations

import base64
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tpf.errors import InvalidInput
from tpf.payloads import PayloadRef
from tpf.retention import EXECUTION_TTL

# Attribute names of the sparse due-work index: only records with a pending deadline or due time
# carry its keys, so the sweeper reads just the work that is due (infra.resources declares it).
# The index is keyed by the wake time ``wk``, a lower bound of the due time ``dt``: most moves
# leave it where it is, so they write the table and not the index (``ExecutionRecord.change``).
DUE_INDEX = "due"
DUE_SHARD = "ds"
DUE_AT = "dt"
WAKE_AT = "wk"

# Attribute names of the search index (``coordinator.store.search`` explains the design): every
# record carries its tenant's search lane as the partition key; its creation time ``ca`` is the
# sort key, so a lane lists executions newest first.
SEARCH_INDEX = "search"
SEARCH_LANE = "sl"
CREATED_AT = "ca"


class Status(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING_EXTERNAL = "WAITING_EXTERNAL"
    WAIT_RETRY = "WAIT_RETRY"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    DLQ = "DLQ"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.DLQ})
ACTIVE = frozenset(set(Status) - TERMINAL)
FAILURES = frozenset({Status.FAILED, Status.DLQ})
"""The statuses of the failures lane of the search index: what operators re-drive."""

# Caps that keep the worst-case item under 1 KB (tests/unit/test_records.py computes it).
MAX_TENANT = 64
MAX_PIPELINE = 100
MAX_KEY = 128
MAX_RELEASE = 64
MAX_ERROR_CODE = 48
MAX_UNIT_ID = 40
MAX_COUNTER = 10**9
MAX_EPOCH_MS = 10**13  # year 2286
MAX_ERROR_MESSAGE = 160  # bytes of UTF-8; longer messages are cut and keep a marker
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"

_EXECUTION_NAMESPACE = uuid.UUID("7a3c1f5e-2b1d-4f0a-9a56-0c8e4d2b6f11")


def execution_id_for(tenant_id: str, pipeline_id: str, idempotency_key: str) -> str:
    """Deterministic id: idempotent submit becomes one conditional put, not a transaction."""
    return str(
        uuid.uuid5(_EXECUTION_NAMESPACE, f"{tenant_id}\x1f{pipeline_id}\x1f{idempotency_key}")
    )


def transition_key(execution_id: str, step_index: int, attempt: int) -> str:
    return f"{execution_id}:{step_index}:{attempt}"


def cap_message(message: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    return encoded[: limit - 3].decode(errors="ignore") + "…"


class ExecutionRecord(BaseModel):
    """One execution. ``version`` is the fencing token: +1 on every state change."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(max_length=MAX_TENANT, pattern=IDENTIFIER)
    execution_id: str
    execution_key: str = Field(max_length=MAX_KEY)
    pipeline_id: str = Field(max_length=MAX_PIPELINE)
    contract_version: str
    release_version: str = Field(max_length=MAX_RELEASE)
    status: Status
    version: int = Field(default=0, ge=0, le=MAX_COUNTER)
    step_index: int = Field(default=0, ge=0, le=10_000)
    attempt: int = Field(default=0, ge=0, le=MAX_COUNTER)
    """Dispatches of the current step; never reset by re-drive, so transition keys stay unique."""
    retries_used: int = Field(default=0, ge=0, le=MAX_COUNTER)
    """Failed attempts counted against the retry budget; re-drive resets it."""
    redrive_generation: int = Field(default=0, ge=0, le=MAX_COUNTER)
    due_at_ms: int | None = Field(default=None, ge=0, le=MAX_EPOCH_MS)
    """Transition deadline (RUNNING) or next due time (QUEUED, WAIT_RETRY); None otherwise."""
    wake_at_ms: int | None = Field(default=None, ge=0, le=MAX_EPOCH_MS)
    """When the sweeper looks at the record: at or before ``due_at_ms``, or None (not due, or a
    parked record its await unit's deadline looks after). The due index is keyed by it."""
    transition_key: str | None = None
    input: PayloadRef
    continuation: PayloadRef | None = None
    """Payload for ``step_index`` when it is not the input (after the first boundary)."""
    result: PayloadRef | None = None
    await_unit_id: str | None = Field(default=None, max_length=MAX_UNIT_ID)
    error_code: str | None = Field(default=None, max_length=MAX_ERROR_CODE)
    error_message: str | None = None
    created_at_ms: int = Field(ge=0, le=MAX_EPOCH_MS)
    updated_at_ms: int = Field(ge=0, le=MAX_EPOCH_MS)

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.execution_id)

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def step_payload(self) -> PayloadRef:
        """The payload the current step starts from."""
        return self.continuation or self.input

    def expires_at(self) -> int:
        """TTL in epoch seconds; DynamoDB may delete late, so readers check it too."""
        return (self.updated_at_ms // 1000) + int(EXECUTION_TTL.total_seconds())

    def change(self, **fields: Any) -> ExecutionRecord:
        """A copy with ``fields`` replaced, validated like a new record.

        A new due time keeps the wake time when that is still ahead and no later than it: the
        index entry stays, and the move costs no index write. A wake time that passed, or one
        after the new due time, follows the due time.
        """
        if "due_at_ms" in fields and "wake_at_ms" not in fields:
            due, wake = fields["due_at_ms"], self.wake_at_ms
            now = fields.get("updated_at_ms", self.updated_at_ms)
            keep = due is not None and wake is not None and now < wake <= due
            fields["wake_at_ms"] = wake if keep else due
        # The fields as they are, not dumped: nested payload references are frozen models,
        # taken as they are, and a dump only to validate it again costs a third of a change.
        return ExecutionRecord.model_validate({**self.__dict__, **fields})


def partition_key(tenant_id: str, execution_id: str) -> str:
    return f"{tenant_id}#{execution_id}"


def search_lane(tenant_id: str, status: Status) -> str:
    """The search index partition a record of ``status`` is in: its tenant's failures lane, or
    the lane of every other execution. Only a move between the two rewrites the index entry."""
    return f"{tenant_id}#{'F' if status in FAILURES else 'E'}"


def due_shard(execution_id: str, shards: int) -> str:
    """Stable shard of the due index for an execution, spreading sweeps over partitions."""
    return str(int(execution_id.replace("-", "")[:8], 16) % shards)


# --- DynamoDB mapping ----------------------------------------------------------------------

_CONTRACT_PREFIX = "sha256:"


def _compact_contract(version: str) -> str:
    if not version.startswith(_CONTRACT_PREFIX):
        return "!" + version
    raw = bytes.fromhex(version.removeprefix(_CONTRACT_PREFIX))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _expand_contract(value: str) -> str:
    if value.startswith("!"):
        return value[1:]
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return _CONTRACT_PREFIX + raw.hex()


def to_item(record: ExecutionRecord, *, shards: int) -> dict[str, Any]:
    """Python-typed item (strings and ints); adapters serialize it for their API."""
    item: dict[str, Any] = {
        "pk": partition_key(record.tenant_id, record.execution_id),
        "k": record.execution_key,
        "p": record.pipeline_id,
        "cv": _compact_contract(record.contract_version),
        "rv": record.release_version,
        "st": record.status.value,
        "v": record.version,
        "si": record.step_index,
        "at": record.attempt,
        "in": record.input.compact(),
        CREATED_AT: record.created_at_ms,
        "ua": record.updated_at_ms,
        "ttl": record.expires_at(),
        SEARCH_LANE: search_lane(record.tenant_id, record.status),
    }
    optional = {
        "ru": record.retries_used or None,
        "rg": record.redrive_generation or None,
        "tk": record.transition_key,
        "cp": record.continuation.compact() if record.continuation else None,
        "out": record.result.compact() if record.result else None,
        "au": record.await_unit_id,
        "ec": record.error_code,
        "em": record.error_message,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    if record.due_at_ms is not None:
        item[DUE_AT] = record.due_at_ms
    if record.wake_at_ms is not None:
        # Sparse index: only records the sweeper will look at carry its keys.
        item[DUE_SHARD] = due_shard(record.execution_id, shards)
        item[WAKE_AT] = record.wake_at_ms
    return item


def from_item(item: dict[str, Any]) -> ExecutionRecord:
    tenant_id, _, execution_id = str(item["pk"]).partition("#")

    def ref(name: str) -> PayloadRef | None:
        return PayloadRef.from_compact(str(item[name])) if name in item else None

    def num(name: str, default: int | None = 0) -> int | None:
        return int(item[name]) if name in item else default

    return ExecutionRecord(
        tenant_id=tenant_id,
        execution_id=execution_id,
        execution_key=item["k"],
        pipeline_id=item["p"],
        contract_version=_expand_contract(item["cv"]),
        release_version=item["rv"],
        status=Status(item["st"]),
        version=int(item["v"]),
        step_index=int(item["si"]),
        attempt=int(item["at"]),
        retries_used=num("ru") or 0,
        redrive_generation=num("rg") or 0,
        due_at_ms=num(DUE_AT, None),
        wake_at_ms=num(WAKE_AT, None),
        transition_key=item.get("tk"),
        input=PayloadRef.from_compact(str(item["in"])),
        continuation=ref("cp"),
        result=ref("out"),
        await_unit_id=item.get("au"),
        error_code=item.get("ec"),
        error_message=item.get("em"),
        created_at_ms=int(item[CREATED_AT]),
        updated_at_ms=int(item["ua"]),
    )


def check_identifier(value: str, *, what: str, pointer: str, limit: int) -> None:
    import re

    if not value or len(value) > limit or not re.match(IDENTIFIER, value):
        raise InvalidInput(
            f"{what} must be 1..{limit} characters of letters, digits and ._:/@-", pointer=pointer
        )


def new_execution(
    *,
    tenant_id: str,
    pipeline_id: str,
    idempotency_key: str,
    contract_version: str,
    release_version: str,
    input: PayloadRef,
    now_ms: int,
    due_at_ms: int | None = None,
    dispatch_deadline_ms: int | None = None,
) -> ExecutionRecord:
    """A QUEUED record, due at ``due_at_ms`` so a sweeper dispatches it if its submitter dies.

    With ``dispatch_deadline_ms`` the record starts RUNNING its first transition instead: submit
    and dispatch become one conditional put (1 WRU, and the due index is written once). If the
    submitter dies before sending the command, the deadline passes and the sweeper retries.
    """
    record = ExecutionRecord(
        tenant_id=tenant_id,
        execution_id=execution_id_for(tenant_id, pipeline_id, idempotency_key),
        execution_key=idempotency_key,
        pipeline_id=pipeline_id,
        contract_version=contract_version,
        release_version=release_version,
        status=Status.QUEUED,
        input=input,
        due_at_ms=now_ms if due_at_ms is None else due_at_ms,
        wake_at_ms=now_ms if due_at_ms is None else due_at_ms,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )
    if dispatch_deadline_ms is None:
        return record
    return record.change(
        status=Status.RUNNING,
        attempt=1,
        transition_key=transition_key(record.execution_id, 0, 1),
        due_at_ms=dispatch_deadline_ms,
    )
