"""The awaits table on DynamoDB. See ``coordinator.awaits.model`` for the item layout.

Every write that counts is a transaction with conditions, so replicas racing on one unit never
double a count: ``record`` puts up to 99 flipped interactions and the unit's ``ADD done :k`` in
one ``TransactWriteItems``; when some interactions were no longer PENDING, the cancellation
reasons name them, and the rest is written again without them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from coordinator.awaits.model import (
    ADMISSION_SK,
    ONCE_SK,
    UNIT_SK,
    AwaitUnit,
    Claim,
    Inbox,
    Interaction,
    InteractionStatus,
    UnitStatus,
    admission_pk,
    carried_unit,
    interaction_from_item,
    interaction_sk,
    interaction_to_item,
    once_pk,
    sweep_position,
    unit_from_item,
    unit_pk,
    unit_to_item,
)
from coordinator.awaits.port import Key, key_of
from tpf.dynamodb import (
    CONFLICT_RETRIES,
    ConditionFailed,
    Items,
    StillContended,
    TransactionCancelled,
    conditions,
    serialize,
    transact,
)
from tpf.errors import StaleRecord

TRANSACTION_ITEMS = 100
"""DynamoDB's limit on the actions of one TransactWriteItems."""
BATCH_GET = 100
BATCH_WRITE = 25
PUT_CONCURRENCY = 32
"""Conditional PutItem calls in flight while a large unit is created."""


class DynamoAwaitTable:
    def __init__(self, client: Any, table_name: str, *, shards: int = 4) -> None:
        self.client, self.table_name, self.shards = client, table_name, shards
        self.items = Items(client, table_name)

    # -- reading ------------------------------------------------------------------------------

    async def get_unit(self, tenant_id: str, unit_id: str) -> AwaitUnit | None:
        # The partition's last item: "U" sorts after every "I#..." and is there unless the unit
        # is carried by its one interaction. One read either way, as a GetItem would be.
        items = await self.items.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": unit_pk(tenant_id, unit_id)}},
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=1,
            limit=1,
        )
        if not items:
            return None
        if items[0]["sk"] == UNIT_SK:
            return unit_from_item(items[0])
        last = interaction_from_item(items[0])
        # Interactions of a unit that is not open yet (they are written before it) carry none.
        return carried_unit(last) if last.carries is not None else None

    async def get_interaction(
        self, tenant_id: str, unit_id: str, item_index: int
    ) -> Interaction | None:
        key = {"pk": unit_pk(tenant_id, unit_id), "sk": interaction_sk(item_index)}
        item = await self.items.get(key)
        return interaction_from_item(item) if item else None

    async def get_units(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], AwaitUnit]:
        unique = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], AwaitUnit] = {}
        for start in range(0, len(unique), BATCH_GET):
            wanted = [
                {"pk": unit_pk(t, u), "sk": UNIT_SK} for t, u in unique[start : start + BATCH_GET]
            ]
            for item in await self.items.get_many(wanted):
                unit = unit_from_item(item)
                found[(unit.tenant_id, unit.unit_id)] = unit
        return found

    async def get_interactions(
        self, keys: Sequence[Key], *, consistent: bool = True
    ) -> dict[Key, Interaction]:
        unique = list(dict.fromkeys(keys))
        found: dict[Key, Interaction] = {}
        for start in range(0, len(unique), BATCH_GET):
            wanted = [
                {"pk": unit_pk(t, u), "sk": interaction_sk(n)}
                for t, u, n in unique[start : start + BATCH_GET]
            ]
            for item in await self.items.get_many(wanted, consistent=consistent):
                interaction = interaction_from_item(item)
                found[key_of(interaction)] = interaction
        return found

    async def by_correlation(self, correlation_id: str) -> Key | None:
        items = await self.items.query(
            IndexName="correlation",
            KeyConditionExpression="cid = :cid",
            ExpressionAttributeValues={":cid": {"S": correlation_id}},
            Limit=1,
            limit=1,
        )
        if not items:
            return None
        tenant_id, _, unit_id = items[0]["pk"].partition("#")
        return tenant_id, unit_id, int(items[0]["sk"].removeprefix("I#"))

    async def interactions(
        self, tenant_id: str, unit_id: str, *, start: int = 0, stop: int | None = None
    ) -> list[Interaction]:
        last = interaction_sk(stop - 1) if stop is not None else "I#~"
        if stop is not None and stop <= start:
            return []
        items = await self.items.query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": {"S": unit_pk(tenant_id, unit_id)},
                ":first": {"S": interaction_sk(start)},
                ":last": {"S": last},
            },
            ConsistentRead=True,
        )
        return [interaction_from_item(i) for i in items]

    async def pending(self, tenant_id: str, *, limit: int, where: Inbox) -> list[Interaction]:
        # The most selective key first; the other filters are the Query's, evaluated on the
        # index, so its pages hold only what is returned.
        filters = {"dl >= :now": {":now": {"N": str(where.not_before_ms)}}}
        if where.step_id is not None:
            filters["sid = :sid"] = {":sid": {"S": where.step_id}}
        if where.assignee is not None:
            index, key = "pending-assignee", "pa = :key"
            value = f"{tenant_id}#{where.assignee}"
            if where.group is not None:
                filters["pg = :pg"] = {":pg": {"S": f"{tenant_id}#{where.group}"}}
        elif where.group is not None:
            index, key, value = "pending-group", "pg = :key", f"{tenant_id}#{where.group}"
        else:
            index, key, value = "pending", "pp = :key", f"T#{tenant_id}"
        values: dict[str, Any] = {":key": {"S": value}}
        for bound in filters.values():
            values.update(bound)
        items = await self.items.query(
            IndexName=index,
            KeyConditionExpression=key,
            FilterExpression=" AND ".join(filters),
            ExpressionAttributeValues=values,
            limit=limit,
        )
        if index != "pending":  # projected narrowly: read the page's interactions
            items = await self._still_pending([(i["pk"], i["sk"]) for i in items])
        return [interaction_from_item(i) for i in items]

    async def _still_pending(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The items of ``keys`` in their order, read consistently, without the settled."""
        read: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET):
            wanted = [{"pk": pk, "sk": sk} for pk, sk in keys[start : start + BATCH_GET]]
            read.update({(i["pk"], i["sk"]): i for i in await self.items.get_many(wanted)})
        found = [read[k] for k in keys if k in read]
        return [i for i in found if i["st"] == InteractionStatus.PENDING.value]

    async def tenant_in_flight(self, tenant_id: str) -> int:
        item = await self.items.get({"pk": admission_pk(tenant_id), "sk": ADMISSION_SK})
        return int(item.get("f", 0)) if item else 0

    async def overdue(self, shard: str, *, now_ms: int, limit: int) -> list[tuple[str, str]]:
        items = await self.items.query(
            IndexName="pending",
            KeyConditionExpression="pp = :pp AND ps <= :now",
            ExpressionAttributeValues={
                ":pp": {"S": f"D#{shard}"},
                ":now": {"S": f"{now_ms:013d}~"},
            },
            limit=limit,
        )
        found = []
        for item in items:
            _, tenant_id, unit_id = item["ps"].split("#", 2)
            found.append((tenant_id, unit_id))
        return found

    # -- opening and closing ------------------------------------------------------------------

    async def create(self, unit: AwaitUnit, interactions: list[Interaction]) -> bool:
        """Interactions first, each only if absent, then the unit only if absent; a carried
        unit is its one interaction, written only if absent.

        Conditional puts cost the WRU a batch would (one per item) and make a second opener,
        one that read "no unit" just before the first wrote it, harmless: it can never turn an
        interaction answered meanwhile back into PENDING.
        """
        if unit.carried:
            [carrier] = interactions
            return await self._put_if_absent(carrier)
        # With interactions to write, a unit already there means another opener did it all.
        # Without, the unit's own condition is check enough: no read.
        if interactions and await self.get_unit(unit.tenant_id, unit.unit_id) is not None:
            return False
        await self.add_interactions(interactions)
        try:
            with conditions():
                await self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize(unit_to_item(unit, self.shards)),
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed:
            return False
        return True

    async def add_interactions(self, interactions: Sequence[Interaction]) -> None:
        limit = asyncio.Semaphore(PUT_CONCURRENCY)

        async def put_if_absent(interaction: Interaction) -> None:
            async with limit:
                # False: another opener wrote it first; theirs stands, answered or not.
                await self._put_if_absent(interaction)

        await asyncio.gather(*(put_if_absent(i) for i in interactions))

    async def _put_if_absent(self, interaction: Interaction) -> bool:
        try:
            with conditions():
                await self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize(interaction_to_item(interaction)),
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed:
            return False
        return True

    async def close_unit(
        self, tenant_id: str, unit_id: str, status: UnitStatus, *, seen: AwaitUnit | None = None
    ) -> AwaitUnit | None:
        for _ in range(CONFLICT_RETRIES):
            unit, seen = seen or await self.get_unit(tenant_id, unit_id), None
            if unit is None or unit.status is not UnitStatus.OPEN:
                return None
            if unit.carried:
                return await self._close_carried(unit, status)
            # A completed unit says every interaction was answered, a solo one's too (whose
            # answer was never counted).
            done = unit.total if status is UnitStatus.COMPLETED else unit.done
            close = unit_update(
                self.table_name,
                tenant_id,
                unit_id,
                "SET #st = :st, acc = :zero, d = :done REMOVE pp, ps, wk",
                # As read (or as the caller saw it): a count that moved since reads it again.
                "#st = :open AND acc = :acc AND d = :was",
                {
                    ":st": status.value,
                    ":zero": 0,
                    ":done": done,
                    ":open": "OPEN",
                    ":acc": unit.accounted,
                    ":was": unit.done,
                },
            )
            hand_back = (
                [tenant_update(self.table_name, tenant_id, -unit.accounted)]
                if unit.accounted
                else []
            )
            if await self._write([close, *hand_back]) is None:
                return replace(unit, status=status, accounted=0, wake_ms=None, done=done)
        raise StaleRecord("the unit kept changing while closing")

    async def _close_carried(self, unit: AwaitUnit, status: UnitStatus) -> AwaitUnit | None:
        """Out of the inbox, unless answered: its answer completed it, with nothing to write."""
        if status is UnitStatus.COMPLETED:
            return None
        if not await self._time_out(unit.tenant_id, unit.unit_id, 0, closed=status):
            return None  # answered (or closed by another replica) meanwhile
        return replace(unit, status=status)

    async def expire(self, interactions: list[Interaction]) -> None:
        pending = [i for i in interactions if i.status is InteractionStatus.PENDING]
        for start in range(0, len(pending), BATCH_WRITE):
            batch = pending[start : start + BATCH_WRITE]
            await asyncio.gather(
                *(self._time_out(i.tenant_id, i.unit_id, i.item_index) for i in batch)
            )

    async def _time_out(
        self, tenant_id: str, unit_id: str, item_index: int, *, closed: UnitStatus | None = None
    ) -> bool:
        """PENDING→TIMED_OUT, out of the inbox (with how its carried unit ``closed``, when it
        carries one); False when it was answered or timed out meanwhile."""
        key = {"pk": unit_pk(tenant_id, unit_id), "sk": interaction_sk(item_index)}
        values = {":out": "TIMED_OUT", ":pending": "PENDING"}
        also = ""
        if closed is not None:
            values[":closed"], also = closed.value, ", un.cl = :closed"
        try:
            with conditions():
                await self.client.update_item(
                    TableName=self.table_name,
                    Key=serialize(key),
                    UpdateExpression=f"SET #st = :out{also} REMOVE pp, ps, pa, pg",
                    ConditionExpression="#st = :pending",
                    ExpressionAttributeNames={"#st": "st"},
                    ExpressionAttributeValues=serialize(values),
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed:
            return False
        return True

    # -- counting -----------------------------------------------------------------------------

    async def record(self, completed: Sequence[Interaction]) -> list[Interaction]:
        recorded: list[Interaction] = []
        step = TRANSACTION_ITEMS - 1  # one action is the unit's counter
        for start in range(0, len(completed), step):
            recorded.extend(await self._record_chunk(list(completed[start : start + step])))
        return recorded

    async def _record_chunk(self, chunk: list[Interaction]) -> list[Interaction]:
        """Flip and count; drop the interactions a cancellation names, and write the rest.

        The answer of a solo interaction is its flip alone: one conditional put, no counter and
        no transaction (2 WRU with its index entry instead of 6 on AWS, which bills a
        transaction's writes twice).
        """
        if len(chunk) == 1 and chunk[0].solo:
            flipped = await self._write([completion(self.table_name, chunk[0])]) is None
            return chunk if flipped else []
        while chunk:
            first = chunk[0]
            flips = [completion(self.table_name, i) for i in chunk]
            count = unit_update(
                self.table_name,
                first.tenant_id,
                first.unit_id,
                "ADD #d :k",
                "#st = :open",
                {":k": len(chunk)},
            )
            reasons = await self._write([*flips, count])
            if reasons is None:
                return chunk
            if reasons[-1] == "ConditionalCheckFailed":
                return []  # the unit closed: nothing of it counts any more
            chunk = [i for i, code in zip(chunk, reasons, strict=False) if code == "None"]
        return []

    async def advance(self, unit: AwaitUnit, moved: AwaitUnit, *, tenant_limit: int) -> bool:
        delta = moved.accounted - unit.accounted
        if delta > tenant_limit:
            return False
        values: dict[str, Any] = {
            ":open": "OPEN",
            ":was_pub": unit.published,
            ":was_acc": unit.accounted,
            ":pub": moved.published,
            ":acc": moved.accounted,
            ":ps": sweep_position(moved),
        }
        expression = "SET pub = :pub, acc = :acc, ps = :ps"
        if moved.wake_ms is None:
            expression += " REMOVE wk"
        else:
            expression += ", wk = :wk"
            values[":wk"] = moved.wake_ms
        move = unit_update(
            self.table_name,
            unit.tenant_id,
            unit.unit_id,
            expression,
            "#st = :open AND pub = :was_pub AND acc = :was_acc",
            values,
        )
        admit = (
            [tenant_update(self.table_name, unit.tenant_id, delta, tenant_limit)] if delta else []
        )
        reasons = await self._write([move, *admit])
        if reasons is None:
            return True
        if reasons[0] == "ConditionalCheckFailed":
            raise StaleRecord("the unit moved on")
        return False  # the tenant's counter refused

    async def _write(self, actions: list[dict[str, Any]]) -> list[str] | None:
        """None when written, else one cancellation reason per action.

        A single action is one conditional UpdateItem or PutItem (half the WRU of a
        transaction).
        """
        try:
            if len(actions) == 1:
                [(kind, action)] = actions[0].items()
                write = self.client.put_item if kind == "Put" else self.client.update_item
                with conditions():
                    await write(**action, ReturnConsumedCapacity="INDEXES")
            else:
                await transact(self.client, actions)
        except ConditionFailed:
            return ["ConditionalCheckFailed"]
        except TransactionCancelled as cancelled:
            return cancelled.reasons
        except StillContended as exc:
            raise StaleRecord("the unit stayed contended") from exc
        return None

    async def reindex(self, interactions: Sequence[Interaction]) -> int:
        changed = 0
        for i in interactions:
            item = interaction_to_item(i)
            keys = {k: v for k, v in item.items() if k in ("pa", "pg")}
            if not keys:  # it names neither, or it is no longer waiting in the inbox
                continue
            try:
                with conditions():
                    await self.client.update_item(
                        TableName=self.table_name,
                        Key=serialize(
                            {
                                "pk": unit_pk(i.tenant_id, i.unit_id),
                                "sk": interaction_sk(i.item_index),
                            }
                        ),
                        UpdateExpression="SET " + ", ".join(f"{k} = :{k}" for k in keys),
                        ConditionExpression="#st = :pending",
                        ExpressionAttributeNames={"#st": "st"},
                        ExpressionAttributeValues=serialize(
                            {":pending": "PENDING", **{f":{k}": v for k, v in keys.items()}}
                        ),
                        ReturnConsumedCapacity="INDEXES",
                    )
            except ConditionFailed:
                continue  # answered or timed out meanwhile: out of the inbox anyway
            changed += 1
        return changed

    async def claim(self, claim: Claim, *, now_ms: int) -> Claim | None:
        # One conditional put; the refusal carries the owner. DynamoDB's TTL deletes an ended
        # claim late, so the condition also accepts one whose period is over.
        try:
            with conditions():
                await self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize(claim_to_item(claim)),
                    ConditionExpression="attribute_not_exists(pk) OR ex = :me OR untl < :now",
                    ExpressionAttributeValues=serialize(
                        {":me": claim.execution_id, ":now": now_ms}
                    ),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    ReturnConsumedCapacity="INDEXES",
                )
        except ConditionFailed as refused:
            # A store that does not return the refusing item is asked for it.
            owner = refused.item or await self.items.get(claim_key(claim))
            if owner is None:
                return await self.claim(claim, now_ms=now_ms)  # it ended meanwhile
            return owner_of(claim, owner)
        return None


def unit_update(
    table_name: str,
    tenant_id: str,
    unit_id: str,
    expression: str,
    condition: str,
    values: dict[str, Any],
) -> dict[str, Any]:
    """An update of the unit item; every one of them requires the unit still OPEN."""
    names = {n: a for n, a in (("#st", "st"), ("#d", "d")) if n in expression + condition}
    return {
        "Update": {
            "TableName": table_name,
            "Key": serialize({"pk": unit_pk(tenant_id, unit_id), "sk": UNIT_SK}),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": serialize({":open": "OPEN", **values}),
        }
    }


def tenant_update(
    table_name: str, tenant_id: str, delta: int, limit: int | None = None
) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": table_name,
        "Key": serialize({"pk": admission_pk(tenant_id), "sk": ADMISSION_SK}),
        "UpdateExpression": "ADD f :delta",
        "ExpressionAttributeValues": serialize({":delta": delta}),
    }
    if limit is not None and delta > 0:
        # Conditions cannot add: "f + delta <= limit" is "f <= limit - delta".
        update["ConditionExpression"] = "attribute_not_exists(f) OR f <= :room"
        update["ExpressionAttributeValues"] = serialize({":delta": delta, ":room": limit - delta})
    return {"Update": update}


def completion(table_name: str, interaction: Interaction) -> dict[str, Any]:
    """Put the answered interaction, only over its PENDING self."""
    return {
        "Put": {
            "TableName": table_name,
            "Item": serialize(interaction_to_item(interaction)),
            "ConditionExpression": "#st = :pending",
            "ExpressionAttributeNames": {"#st": "st"},
            "ExpressionAttributeValues": serialize({":pending": "PENDING"}),
        }
    }


def claim_key(claim: Claim) -> dict[str, str]:
    return {"pk": once_pk(claim.tenant_id, claim.step_id, claim.key), "sk": ONCE_SK}


def claim_to_item(claim: Claim) -> dict[str, Any]:
    return {
        **claim_key(claim),
        "ex": claim.execution_id,
        "u": claim.unit_id,
        "n": claim.item_index,
        "ca": claim.claimed_at_ms,
        "untl": claim.until_ms,
        "ttl": claim.until_ms // 1000,
    }


def owner_of(asked: Claim, item: dict[str, Any]) -> Claim:
    """The claim stored for ``asked``'s key."""
    return replace(
        asked,
        execution_id=str(item["ex"]),
        unit_id=str(item["u"]),
        item_index=int(item["n"]),
        claimed_at_ms=int(item["ca"]),
        until_ms=int(item["untl"]),
    )
