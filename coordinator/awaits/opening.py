"""Opening an await unit when an execution parks: its interactions, the unit, then admission."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from coordinator.awaits.admission import Admitter
from coordinator.awaits.completing import canonical
from coordinator.awaits.model import (
    AwaitUnit,
    Carried,
    Interaction,
    UnitStatus,
    interaction_id,
)
from coordinator.awaits.port import AwaitTable
from coordinator.awaits.resuming import Resumer
from coordinator.identities import correlation_id
from tpf.clock import now_ms
from tpf.errors import InvalidInput
from tpf.pages import is_paged, pages_of
from tpf.payloads import PayloadRef, PayloadStore
from tpf.records import ExecutionRecord
from tpf.registry import Registry
from tpf.untrusted import parse_json
from tpf.wire import Payload, Suspension

log = logging.getLogger("tpf.coordinator")

MAX_REQUEST_BYTES = 128 * 1024
"""One await request, canonical JSON. It is stored in its interaction (a DynamoDB item holds
400 KB, with the answer beside it) and sent in one message (SQS carries 256 KiB, envelope and
signature included), so a larger one could never be opened or sent."""


class UnitOpener:
    def __init__(
        self,
        *,
        table: AwaitTable,
        registry: Registry,
        payloads: PayloadStore,
        admitter: Admitter,
        resumer: Resumer,
    ) -> None:
        self.table, self.registry, self.payloads = table, registry, payloads
        self.admitter, self.resumer = admitter, resumer

    async def open(
        self, record: ExecutionRecord, suspension: Suspension, *, resume_step: int
    ) -> None:
        """Store the unit and its interactions of a just-parked execution, then admit."""
        assert record.await_unit_id is not None
        unit_id, now = record.await_unit_id, now_ms()
        existing = await self.table.get_unit(record.tenant_id, unit_id)
        if existing is None:
            unit, carrier = await self._store(record, suspension, resume_step, now)
            # Conditional: what it wrote is stored.
            created = await self.table.create(unit, [carrier] if carrier else [])
            existing = unit if created else await self.table.get_unit(unit.tenant_id, unit_id)
        if existing is None or existing.status is not UnitStatus.OPEN:
            return
        if existing.complete:  # an expansion of no items waits for nothing
            await self.resumer.resume(existing)
            return
        if existing.published < existing.total:
            await self.admitter.admit(existing, now)
        log.info(
            "await opened",
            extra={
                "action": "await-open",
                "executionId": existing.execution_id,
                "unitId": unit_id,
                "items": existing.total,
            },
        )

    async def _store(
        self, record: ExecutionRecord, suspension: Suspension, resume_step: int, now: int
    ) -> tuple[AwaitUnit, Interaction | None]:
        """Store the interactions, a page of requests at a time; the unit to create last. A
        carried unit's one interaction is returned unwritten instead: it is the unit."""
        assert record.await_unit_id is not None
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        step = contract.step(suspension.step_id)
        fields = step.await_.idempotency_fields if step.await_ else ()
        exclusive_ms = step.await_.exclusive_ms if step.await_ else None
        deadline = now + suspension.timeout_ms
        inbox = not self.admitter.bounded(suspension.transport)
        # An inbox await of one interaction: its record watches its deadline, and its
        # interaction carries it (no item of its own).
        watched = inbox and not step.itemized
        carries = Carried(
            resume_step=resume_step,
            transport=suspension.transport,
            request_type=step.output_type_id,
            response_type=step.await_.response.type_id if step.await_ else None,
        )
        total, carrier = 0, None
        async for page in self._requests(record, suspension.requests):
            interactions = []
            for request in page:
                key = _interaction_key(record, suspension.step_id, request, fields, total)
                if exclusive_ms:  # one key across executions: the provider's must name the tenant
                    key = f"{record.tenant_id}:{key}"
                interactions.append(
                    Interaction(
                        tenant_id=record.tenant_id,
                        unit_id=record.await_unit_id,
                        item_index=total,
                        execution_id=record.execution_id,
                        step_id=suspension.step_id,
                        step_index=suspension.step_index,
                        # An inbox answer names its interaction by id or by correlation id:
                        # the same string, so neither needs an index entry to be found.
                        correlation_id=interaction_id(record.await_unit_id, total)
                        if inbox
                        else correlation_id(
                            record.tenant_id, record.execution_id, suspension.step_id, key
                        ),
                        idempotency_key=key,
                        request=canonical(request),
                        deadline_ms=deadline,
                        created_at_ms=now,
                        inbox=inbox,
                        solo=not step.itemized,
                        carries=carries if watched else None,
                    )
                )
                total += 1
            if watched:
                [carrier] = interactions
            else:
                await self.table.add_interactions(interactions)
        unit = AwaitUnit(
            # An inbox has nothing to admit: every request is "sent" by being stored.
            published=0 if not inbox else total,
            tenant_id=record.tenant_id,
            unit_id=record.await_unit_id,
            execution_id=record.execution_id,
            step_id=suspension.step_id,
            step_index=suspension.step_index,
            resume_step=resume_step,
            transport=suspension.transport,
            itemized=step.itemized,
            total=total,
            deadline_ms=deadline,
            created_at_ms=now,
            request_type=step.output_type_id,
            response_type=step.await_.response.type_id if step.await_ else None,
            exclusive_ms=exclusive_ms,
            paged=step.itemized and suspension.reads_pages,
            watched=watched,
            carried=watched,
        )
        return unit, carrier

    async def _requests(
        self, record: ExecutionRecord, payload: Payload
    ) -> AsyncIterator[list[Any]]:
        """The step's requests a page at a time, each within ``MAX_REQUEST_BYTES``; else
        ``InvalidInput`` (raised before the page that holds it is stored)."""
        if payload.payload_ref is not None:
            ref = PayloadRef(tier=payload.payload_ref.tier, digest=payload.payload_ref.digest)
            text = (await self.payloads.get(record.tenant_id, record.execution_id, ref)).decode()
        else:
            text = payload.payload or "[]"
        value = parse_json(text, pointer="/requests")
        document = value if isinstance(value, list) or is_paged(value) else [value]
        item = 0
        tenant_id, execution_id = record.tenant_id, record.execution_id
        async for page in pages_of(self.payloads, tenant_id, execution_id, document):
            for request in page:
                size = len(canonical(request).encode())
                if size > MAX_REQUEST_BYTES:
                    raise InvalidInput(
                        f"request {item} is {size} bytes; an await request holds at most "
                        f"{MAX_REQUEST_BYTES}",
                        pointer=f"/requests/{item}",
                    )
                item += 1
            yield page


def _interaction_key(
    record: ExecutionRecord, step_id: str, request: Any, fields: Sequence[str], item: int
) -> str:
    """From the declared request fields, else ``executionId:stepId`` (per item when itemized)."""
    if fields and isinstance(request, dict):
        return ":".join(str(request.get(f, "")) for f in fields)
    base = f"{record.execution_id}:{step_id}"
    return f"{base}:{item}" if item else base
