"""Await units and interactions as the coordinator stores them (REFERENCE section 3).

A **unit** is what one parked execution waits for; it holds one **interaction** per request
(one, or one per item of an itemized await). Both live in the awaits table under the unit's
partition, so a unit's interactions are one Query::

    pk = <tenant>#<unitId>   sk = "U"            the unit: deadline, total, done counter
                             sk = "I#000042"     interaction 42: request, then response
    pk = <tenant>#~admission sk = "A"            the tenant's await requests in flight
    pk = <tenant>#~once#<step>#<key> sk = "O"    who sent an exclusive await's key first

A unit its execution's record watches (an inbox await of one interaction) has no "U" item
since 2026-12: its interaction carries it (``un``: ``Carried``, ``AwaitUnit.carried``), so
``get_unit`` reads a partition's last item, "U" when there is one, else such a carrier.

Two sparse entries of the ``pending`` index make the hot lookups Query-only: an open unit
carries ``pp = D#<shard>`` ordered by the time the sweeper should look at it (its deadline, or
earlier while admission has work to check), unless its execution's record watches it
(``AwaitUnit.watched``: an inbox await of one interaction, whose deadline is the record's due
time), and a waiting interaction of the human inbox carries
``pp = T#<tenant>`` ordered by creation. A waiting interaction whose request names an
``assignee`` or a ``group`` (TPF's inbox filters) also carries ``pa = <tenant>#<assignee>`` and
``pg = <tenant>#<group>``, keys of the sparse ``pending-assignee`` and ``pending-group`` indexes,
so a filtered inbox is one Query too; requests without them cost those indexes nothing.
Completing or timing out removes them all. The ``correlation`` index maps ``cid`` to the
interaction's key, for a provider's interactions: an inbox interaction's correlation id is its
interaction id (``derived_correlation``), stored as no ``cid``, so it costs the index nothing.

Admission (REFERENCE section 3): a unit publishes its requests in item order; ``published`` is
the cursor (items below it were sent), so ``published - done`` are out at once. ``accounted`` is
what the unit last added to its tenant's in-flight counter; it is settled when the cursor moves
and when the unit closes, so completions never touch the tenant's item.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from tpf.retention import EXECUTION_TTL

UNIT_SK = "U"
ADMISSION_SK = "A"


class UnitStatus(StrEnum):
    OPEN = "OPEN"
    COMPLETED = "COMPLETED"
    TIMED_OUT = "TIMED_OUT"
    ABANDONED = "ABANDONED"
    """The execution moved on without it (cancelled, or re-driven into a fresh unit)."""


class InteractionStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    TIMED_OUT = "TIMED_OUT"


def unit_pk(tenant_id: str, unit_id: str) -> str:
    return f"{tenant_id}#{unit_id}"


def admission_pk(tenant_id: str) -> str:
    return f"{tenant_id}#~admission"  # "~" is not in a unit id


ONCE_SK = "O"


def once_pk(tenant_id: str, step_id: str, key: str) -> str:
    return f"{tenant_id}#~once#{step_id}#{key}"


@dataclass(frozen=True)
class Claim:
    """An exclusive await's key, owned by the execution that sent it first, until ``until_ms``."""

    tenant_id: str
    step_id: str
    key: str
    execution_id: str
    unit_id: str
    item_index: int
    claimed_at_ms: int
    until_ms: int


MAX_ASSIGNMENT = 256
"""Characters of an assignee or group that is indexed; a longer one is listed, not filterable
(an index key holds 2 KB, and a request must never fail to open for a name)."""


def assignment(request: str) -> tuple[str | None, str | None]:
    """The request's ``assignee`` and ``group``: string fields of those names, when indexable."""
    try:
        fields = json.loads(request)
    except ValueError:
        return None, None
    if not isinstance(fields, dict):
        return None, None

    def name(value: Any) -> str | None:
        ok = isinstance(value, str) and 0 < len(value) <= MAX_ASSIGNMENT
        return value if ok else None

    return name(fields.get("assignee")), name(fields.get("group"))


@dataclass(frozen=True)
class Inbox:
    """Which waiting interactions a listing wants: all of them, or by step, assignee, group."""

    not_before_ms: int
    """Their deadline is at or after this (a passed one is about to time out)."""
    step_id: str | None = None
    assignee: str | None = None
    group: str | None = None

    def wants(self, i: Interaction) -> bool:
        assignee, group = assignment(i.request)
        return (
            i.deadline_ms >= self.not_before_ms
            and (self.step_id is None or i.step_id == self.step_id)
            and (self.assignee is None or assignee == self.assignee)
            and (self.group is None or group == self.group)
        )


def interaction_sk(item_index: int) -> str:
    return f"I#{item_index:06d}"


def deadline_shard(unit_id: str, shards: int) -> str:
    return str(int(hashlib.sha256(unit_id.encode()).hexdigest()[:8], 16) % shards)


@dataclass(frozen=True)
class AwaitUnit:
    tenant_id: str
    unit_id: str
    execution_id: str
    step_id: str
    step_index: int
    resume_step: int
    """Where the execution continues once every interaction is recorded."""
    transport: str
    itemized: bool
    total: int
    deadline_ms: int
    created_at_ms: int
    done: int = 0
    status: UnitStatus = UnitStatus.OPEN
    published: int = 0
    """Items ``[0, published)`` were sent to the transport."""
    accounted: int = 0
    """Requests of this unit counted in its tenant's in-flight total."""
    wake_ms: int | None = None
    """When the sweeper looks at it before its deadline (stalled or waiting for admission)."""
    request_type: str | None = None
    response_type: str | None = None
    """Type ids of the step's request and answer, as TPF's providers read them (``inputType``,
    ``outputType``); absent on units opened before 2026-12."""
    exclusive_ms: int | None = None
    """How long the first sender of a key owns it (the step's ``exclusive``); None: not
    exclusive. Absent on units opened before 2026-12, which claim nothing."""
    paged: bool = False
    """Its answers go to the step after it as pages when many (its worker said it reads them);
    absent on units opened before 2026-12, whose answers go as one list."""
    watched: bool = False
    """Its execution's record watches its deadline, so it has no entry in the sweeper's list:
    an inbox await of one interaction, which has nothing to admit or send again. False on units
    opened before 2026-12, which the await sweeper watches."""
    carried: bool = False
    """Stored in its one interaction's item (``Interaction.carries``), with no item of its own:
    a watched unit opened since 2026-12. Opening it is that one write; its answer completes it,
    so completing it writes nothing more. Its status is the interaction's (``carried_unit``)."""

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    @property
    def in_flight(self) -> int:
        return max(0, self.published - self.done)

    @property
    def look_at_ms(self) -> int:
        return self.deadline_ms if self.wake_ms is None else min(self.deadline_ms, self.wake_ms)


@dataclass(frozen=True)
class Carried:
    """What a carried unit (``AwaitUnit.carried``) keeps in its interaction's item: the unit's
    fields the interaction does not hold already."""

    resume_step: int
    transport: str
    request_type: str | None = None
    response_type: str | None = None
    closed: UnitStatus | None = None
    """How it was closed otherwise than by its answer (timed out, abandoned), once it was."""


@dataclass(frozen=True)
class Interaction:
    tenant_id: str
    unit_id: str
    item_index: int
    execution_id: str
    step_id: str
    step_index: int
    correlation_id: str
    idempotency_key: str
    """Of the interaction (from the step's declared fields), not of a completion."""
    request: str
    """The request document as JSON text."""
    deadline_ms: int
    created_at_ms: int
    status: InteractionStatus = InteractionStatus.PENDING
    response: str | None = None
    response_digest: str | None = None
    completion_key: str | None = None
    actor: str | None = None
    completed_at_ms: int | None = None
    inbox: bool = True
    """Listed in the tenant's pending interactions (the human inbox); not for provider queues."""
    duplicate_of: str | None = None
    """JSON of the ``Owner`` when the coordinator answered it as a duplicate, never sending it."""
    solo: bool = False
    """The one interaction of an await that is not itemized: its answer is one conditional
    write, and its status alone says whether the await is answered (the unit's counter is not
    touched). False on interactions stored before 2026-12, whose answers are counted."""
    carries: Carried | None = None
    """Its unit, when the unit is carried in this item (``AwaitUnit.carried``)."""

    @property
    def interaction_id(self) -> str:
        return interaction_id(self.unit_id, self.item_index)

    def completed(
        self, *, response: str, digest: str, key: str | None, actor: str | None, now_ms: int
    ) -> Interaction:
        return replace(
            self,
            status=InteractionStatus.COMPLETED,
            response=response,
            response_digest=digest,
            completion_key=key,
            actor=actor,
            completed_at_ms=now_ms,
        )


def interaction_id(unit_id: str, item_index: int) -> str:
    """Derived from (unit, item) and reversible, so a lookup by id is one GetItem."""
    return f"{unit_id}-{item_index}"


_UNIT_STATUS_OF = {
    InteractionStatus.PENDING: UnitStatus.OPEN,
    InteractionStatus.COMPLETED: UnitStatus.COMPLETED,
    InteractionStatus.TIMED_OUT: UnitStatus.TIMED_OUT,
}


def carried_unit(i: Interaction) -> AwaitUnit:
    """The unit ``i`` carries, as of ``i``: open while it waits, completed by its answer."""
    assert i.carries is not None, "not a carrier"
    status = i.carries.closed or _UNIT_STATUS_OF[i.status]
    return AwaitUnit(
        tenant_id=i.tenant_id,
        unit_id=i.unit_id,
        execution_id=i.execution_id,
        step_id=i.step_id,
        step_index=i.step_index,
        resume_step=i.carries.resume_step,
        transport=i.carries.transport,
        itemized=False,
        total=1,
        deadline_ms=i.deadline_ms,
        created_at_ms=i.created_at_ms,
        done=1 if status is UnitStatus.COMPLETED else 0,
        status=status,
        published=1,  # an inbox "sends" its request by storing it
        request_type=i.carries.request_type,
        response_type=i.carries.response_type,
        watched=True,
        carried=True,
    )


def derived_correlation(value: str) -> tuple[str, int] | None:
    """The (unit, item) of a correlation id that is an interaction id: an inbox interaction's,
    since 2026-12. Others (a provider's, an earlier inbox's) are found through the index."""
    return parse_interaction_id(value) if _DERIVED.fullmatch(value) else None


_DERIVED = re.compile(r"[0-9a-f]{32}-[0-9]+")


def parse_interaction_id(value: str) -> tuple[str, int] | None:
    unit_id, dash, item = value.rpartition("-")
    if not dash or not item.isdigit() or not unit_id:
        return None
    return unit_id, int(item)


CARRIER_KEPT_S = 86_400
"""A carrier is kept a day longer than the retention after its deadline: a record that resumed
with its answer refers to it (``PayloadRef`` tier ``answers``) until the record expires, and the
record's last change may come after the deadline (a late resume, then its step's retries). A
re-drive, which starts the record's retention again, stores the answer on its own first."""


def _ttl(at_ms: int) -> int:
    return at_ms // 1000 + int(EXECUTION_TTL.total_seconds())


def unit_to_item(unit: AwaitUnit, shards: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": unit_pk(unit.tenant_id, unit.unit_id),
        "sk": UNIT_SK,
        "ex": unit.execution_id,
        "sid": unit.step_id,
        "si": unit.step_index,
        "rs": unit.resume_step,
        "tr": unit.transport,
        "it": unit.itemized,
        "n": unit.total,
        "d": unit.done,
        "dl": unit.deadline_ms,
        "ca": unit.created_at_ms,
        "st": unit.status.value,
        "pub": unit.published,
        "acc": unit.accounted,
        "ttl": _ttl(unit.deadline_ms),
    }
    if unit.wake_ms is not None:
        item["wk"] = unit.wake_ms
    if unit.request_type is not None:
        item["rqt"] = unit.request_type
    if unit.response_type is not None:
        item["rst"] = unit.response_type
    if unit.exclusive_ms is not None:
        item["xm"] = unit.exclusive_ms
    if unit.paged:
        item["pgd"] = True
    if unit.watched:
        item["rw"] = True
    elif unit.status is UnitStatus.OPEN:
        item["pp"] = f"D#{deadline_shard(unit.unit_id, shards)}"
        item["ps"] = sweep_position(unit)
    return item


def sweep_position(unit: AwaitUnit) -> str:
    """The sort key of an open unit in the sweeper's list: when to look, then who."""
    return f"{unit.look_at_ms:013d}#{unit.tenant_id}#{unit.unit_id}"


def unit_from_item(item: dict[str, Any]) -> AwaitUnit:
    tenant_id, _, unit_id = str(item["pk"]).partition("#")
    return AwaitUnit(
        tenant_id=tenant_id,
        unit_id=unit_id,
        execution_id=str(item["ex"]),
        step_id=str(item["sid"]),
        step_index=int(item["si"]),
        resume_step=int(item["rs"]),
        transport=str(item["tr"]),
        itemized=bool(item["it"]),
        total=int(item["n"]),
        done=int(item["d"]),
        deadline_ms=int(item["dl"]),
        created_at_ms=int(item["ca"]),
        status=UnitStatus(item["st"]),
        published=int(item.get("pub", 0)),
        accounted=int(item.get("acc", 0)),
        wake_ms=int(item["wk"]) if "wk" in item else None,
        request_type=str(item["rqt"]) if "rqt" in item else None,
        response_type=str(item["rst"]) if "rst" in item else None,
        exclusive_ms=int(item["xm"]) if "xm" in item else None,
        paged=bool(item.get("pgd", False)),
        watched=bool(item.get("rw", False)),
    )


def interaction_to_item(i: Interaction) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": unit_pk(i.tenant_id, i.unit_id),
        "sk": interaction_sk(i.item_index),
        "ex": i.execution_id,
        "sid": i.step_id,
        "si": i.step_index,
        "ik": i.idempotency_key,
        "rq": i.request,
        "dl": i.deadline_ms,
        "ca": i.created_at_ms,
        "st": i.status.value,
        "ttl": _ttl(i.deadline_ms) + (CARRIER_KEPT_S if i.carries is not None else 0),
    }
    optional = {
        "rp": i.response,
        "rd": i.response_digest,
        "rk": i.completion_key,
        "by": i.actor,
        "at": i.completed_at_ms,
        "dup": i.duplicate_of,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    if i.correlation_id != i.interaction_id:
        # Only a correlation id that is not the interaction's id needs the ``correlation``
        # index: an inbox interaction's is found by parsing it (one WRU less to open it).
        item["cid"] = i.correlation_id
    if i.carries is not None:
        carried = {
            "rs": i.carries.resume_step,
            "tr": i.carries.transport,
            "rqt": i.carries.request_type,
            "rst": i.carries.response_type,
            "cl": i.carries.closed.value if i.carries.closed else None,
        }
        item["un"] = {k: v for k, v in carried.items() if v is not None}
    if i.solo:
        item["so"] = True
    if not i.inbox:
        item["ib"] = False
    elif i.status is InteractionStatus.PENDING:
        item["pp"] = f"T#{i.tenant_id}"
        item["ps"] = f"{i.created_at_ms:013d}#{i.interaction_id}"
        assignee, group = assignment(i.request)
        if assignee is not None:
            item["pa"] = f"{i.tenant_id}#{assignee}"
        if group is not None:
            item["pg"] = f"{i.tenant_id}#{group}"
    return item


def interaction_from_item(item: dict[str, Any]) -> Interaction:
    tenant_id, _, unit_id = str(item["pk"]).partition("#")
    index = int(str(item["sk"]).removeprefix("I#"))
    at = item.get("at")
    return Interaction(
        tenant_id=tenant_id,
        unit_id=unit_id,
        item_index=index,
        execution_id=str(item["ex"]),
        step_id=str(item["sid"]),
        step_index=int(item["si"]),
        correlation_id=str(item["cid"]) if "cid" in item else interaction_id(unit_id, index),
        idempotency_key=str(item["ik"]),
        request=str(item["rq"]),
        deadline_ms=int(item["dl"]),
        created_at_ms=int(item["ca"]),
        status=InteractionStatus(item["st"]),
        response=item.get("rp"),
        response_digest=item.get("rd"),
        completion_key=item.get("rk"),
        actor=item.get("by"),
        completed_at_ms=int(at) if at is not None else None,
        inbox=bool(item.get("ib", True)),
        duplicate_of=item.get("dup"),
        solo=bool(item.get("so", False)),
        carries=_carries(item["un"]) if "un" in item else None,
    )


def _carries(fields: dict[str, Any]) -> Carried:
    return Carried(
        resume_step=int(fields["rs"]),
        transport=str(fields["tr"]),
        request_type=str(fields["rqt"]) if "rqt" in fields else None,
        response_type=str(fields["rst"]) if "rst" in fields else None,
        closed=UnitStatus(fields["cl"]) if "cl" in fields else None,
    )
