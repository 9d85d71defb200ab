"""Opening, completing and timing out await units; resuming the execution exactly once.

Every step is idempotent and ordered so a crash anywhere is repaired by a retry of the same
call (a redelivered result or completion message, a client retrying its HTTP call) or by the
await sweeper at the unit's deadline::

    open:     interactions ─ unit (if absent) ─ publish ─ unit.published
    complete: interaction PENDING→COMPLETED + unit.done+1 (one transaction)
              ─ if done = total: resume the execution (conditional) ─ unit COMPLETED
    sweep:    unit overdue ─ complete? resume : fail AWAIT_TIMEOUT ─ unit TIMED_OUT

Completion semantics (REFERENCE gap 6): the same answer again is a duplicate (no change); a
different answer is a conflict (409); an answer after the deadline is refused and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.awaits.model import (
    AwaitUnit,
    Interaction,
    InteractionStatus,
    UnitStatus,
    parse_interaction_id,
)
from coordinator.awaits.tables import AwaitTable
from coordinator.awaits.transports import Transports
from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.identities import correlation_id
from coordinator.records import ExecutionRecord, Status
from coordinator.registry import Registry
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import ConfigurationError, Conflict, InvalidInput, NotFound, StaleRecord
from tpf.loops import repeat
from tpf.payloads import PayloadRef, PayloadStore, digest_of
from tpf.settings import Timings
from tpf.signing import SignatureRejected, Signer
from tpf.wire import Payload, Suspension

log = logging.getLogger("tpf.coordinator")


@dataclass(frozen=True)
class Completed:
    interaction: Interaction
    duplicate: bool


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AwaitService:
    def __init__(
        self,
        *,
        table: AwaitTable,
        store: ExecutionStore,
        registry: Registry,
        payloads: PayloadStore,
        dispatcher: Dispatcher,
        dead_letters: DeadLetterPublisher,
        transports: Transports,
        signer: Signer,
        timings: Timings,
        shards: int = 4,
    ) -> None:
        self.table, self.store, self.registry = table, store, registry
        self.payloads, self.dispatcher, self.dead_letters = payloads, dispatcher, dead_letters
        self.transports, self.signer, self.timings = transports, signer, timings
        self.shards = [str(i) for i in range(shards)]

    # -- open ---------------------------------------------------------------------------------

    async def open(
        self, record: ExecutionRecord, suspension: Suspension, *, resume_step: int
    ) -> None:
        """Store the unit and its interactions of a just-parked execution, then publish."""
        assert record.await_unit_id is not None
        unit_id, now = record.await_unit_id, now_ms()
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        step = contract.step(suspension.step_id)
        fields = step.await_.idempotency_fields if step.await_ else ()
        requests = await self._requests(record, suspension.requests)
        deadline = now + suspension.timeout_ms
        interactions = []
        for item, request in enumerate(requests):
            key = _interaction_key(record, suspension.step_id, request, fields, item)
            interactions.append(
                Interaction(
                    tenant_id=record.tenant_id,
                    unit_id=unit_id,
                    item_index=item,
                    execution_id=record.execution_id,
                    step_id=suspension.step_id,
                    step_index=suspension.step_index,
                    correlation_id=correlation_id(
                        record.tenant_id, record.execution_id, suspension.step_id, key
                    ),
                    idempotency_key=key,
                    request=canonical(request),
                    deadline_ms=deadline,
                    created_at_ms=now,
                )
            )
        unit = AwaitUnit(
            tenant_id=record.tenant_id,
            unit_id=unit_id,
            execution_id=record.execution_id,
            step_id=suspension.step_id,
            step_index=suspension.step_index,
            resume_step=resume_step,
            transport=suspension.transport,
            itemized=step.itemized,
            total=len(interactions),
            deadline_ms=deadline,
            created_at_ms=now,
        )
        existing = await self.table.get_unit(unit.tenant_id, unit_id)
        if existing is None:
            await self.table.create(unit, interactions)
            existing = await self.table.get_unit(unit.tenant_id, unit_id)
        if existing is None or existing.published or existing.status is not UnitStatus.OPEN:
            return
        try:
            transport = self.transports.get(existing.transport)
        except ConfigurationError as exc:
            log.error(str(exc), extra={"action": "await-open", "executionId": unit.execution_id})
            return  # the deadline ends it; the message names what to configure
        stored = await self.table.interactions(unit.tenant_id, unit_id)
        await transport.publish(
            existing, stored, {i.interaction_id: self._token(i) for i in stored}
        )
        with contextlib.suppress(StaleRecord):
            await self.table.update_unit(replace(existing, published=True), expect=UnitStatus.OPEN)
        log.info(
            "await opened",
            extra={"action": "await-open", "executionId": unit.execution_id, "unitId": unit_id},
        )

    async def _requests(self, record: ExecutionRecord, payload: Payload) -> list[Any]:
        if payload.payload_ref is not None:
            ref = PayloadRef(tier=payload.payload_ref.tier, digest=payload.payload_ref.digest)
            text = (await self.payloads.get(record.tenant_id, record.execution_id, ref)).decode()
        else:
            text = payload.payload or "[]"
        value = json.loads(text)
        return value if isinstance(value, list) else [value]

    # -- complete -----------------------------------------------------------------------------

    async def complete(
        self,
        tenant_id: str,
        *,
        response: Any,
        interaction_id: str | None = None,
        correlation: str | None = None,
        resume_token: str | None = None,
        idempotency_key: str | None = None,
        actor: str | None = None,
    ) -> Completed:
        now = now_ms()
        interaction = await self._find(tenant_id, interaction_id, correlation, resume_token, now)
        data = canonical(response)
        digest = digest_of(data.encode())
        for _ in range(3):  # a concurrent completion of the same interaction: look again
            if interaction.status is InteractionStatus.COMPLETED:
                if interaction.response_digest != digest:
                    metrics.AWAIT_COMPLETIONS.labels(outcome="conflict").inc()
                    raise Conflict(
                        f"interaction {interaction.interaction_id} was completed with another "
                        "response",
                        code="INTERACTION_ALREADY_COMPLETED",
                    )
                metrics.AWAIT_COMPLETIONS.labels(outcome="duplicate").inc()
                await self._resume_if_complete(interaction)
                return Completed(interaction, duplicate=True)
            if interaction.status is InteractionStatus.TIMED_OUT or now > interaction.deadline_ms:
                metrics.AWAIT_COMPLETIONS.labels(outcome="late").inc()
                log.warning(
                    "late completion refused",
                    extra={
                        "action": "await-late",
                        "executionId": interaction.execution_id,
                        "interactionId": interaction.interaction_id,
                        "actor": actor,
                    },
                )
                raise Conflict(
                    f"interaction {interaction.interaction_id} is past its deadline",
                    code="AWAIT_DEADLINE_PASSED",
                )
            await self._validate(interaction, response)
            done = interaction.completed(
                response=data, digest=digest, key=idempotency_key, actor=actor, now_ms=now
            )
            try:
                await self.table.record(done)
            except StaleRecord:
                current = await self.table.get_interaction(
                    tenant_id, interaction.unit_id, interaction.item_index
                )
                if current is None or current.status is InteractionStatus.PENDING:
                    raise Conflict(
                        "the await this interaction belongs to is closed", code="AWAIT_CLOSED"
                    ) from None
                interaction = current
                continue
            metrics.AWAIT_COMPLETIONS.labels(outcome="recorded").inc()
            await self._resume_if_complete(done)
            return Completed(done, duplicate=False)
        raise Conflict("the interaction kept changing; retry", code="AWAIT_CONTENDED")

    async def pending(
        self,
        tenant_id: str,
        *,
        step_id: str | None = None,
        assignee: str | None = None,
        group: str | None = None,
        limit: int = 100,
    ) -> list[Interaction]:
        filtered = step_id is not None or assignee is not None or group is not None
        found = await self.table.pending(tenant_id, limit=1000 if filtered else limit)
        now = now_ms()

        def wanted(i: Interaction) -> bool:
            request = json.loads(i.request)
            fields = request if isinstance(request, dict) else {}
            return (
                i.deadline_ms >= now
                and (step_id is None or i.step_id == step_id)
                and (assignee is None or fields.get("assignee") == assignee)
                and (group is None or fields.get("group") == group)
            )

        return [i for i in found if wanted(i)][:limit]

    async def _find(
        self,
        tenant_id: str,
        interaction_id: str | None,
        correlation: str | None,
        token: str | None,
        now: int,
    ) -> Interaction:
        claims: dict[str, object] = {}
        if token is not None:
            try:
                claims = self.signer.read_token(token)
            except SignatureRejected as exc:
                raise InvalidInput(f"resumeToken: {exc.reason}", pointer="/resumeToken") from exc
            interaction_id = str(claims.get("i", ""))
        found: Interaction | None = None
        if interaction_id is not None:
            parsed = parse_interaction_id(interaction_id)
            if parsed is not None:
                found = await self.table.get_interaction(tenant_id, *parsed)
        elif correlation is not None:
            key = await self.table.by_correlation(correlation)
            if key is not None and key[0] == tenant_id:
                found = await self.table.get_interaction(*key)
        else:
            raise InvalidInput(
                "give interactionId, correlationId or resumeToken", pointer="/interactionId"
            )
        if found is None or found.tenant_id != tenant_id:
            raise NotFound(f"no interaction {interaction_id or correlation} for {tenant_id}")
        if claims and claims != self._claims(found):
            raise InvalidInput("resumeToken does not match the interaction", pointer="/resumeToken")
        return found

    async def _validate(self, interaction: Interaction, response: Any) -> None:
        record = await self.store.get(interaction.tenant_id, interaction.execution_id)
        if record is None:
            raise NotFound(f"execution {interaction.execution_id} no longer exists")
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        contract.validate_await_response(interaction.step_id, response)

    def _claims(self, i: Interaction) -> dict[str, object]:
        return {
            "t": i.tenant_id,
            "i": i.interaction_id,
            "c": i.correlation_id,
            "e": i.execution_id,
            "s": i.step_id,
            "d": i.deadline_ms,
            "at": i.created_at_ms,
        }

    def _token(self, i: Interaction) -> str:
        return self.signer.mint_token(self._claims(i))

    # -- resume -------------------------------------------------------------------------------

    async def _resume_if_complete(self, interaction: Interaction) -> None:
        unit = await self.table.get_unit(interaction.tenant_id, interaction.unit_id)
        if unit is not None and unit.status is UnitStatus.OPEN and unit.complete:
            await self._resume(unit)

    async def _resume(self, unit: AwaitUnit) -> None:
        record = await self.store.get(unit.tenant_id, unit.execution_id)
        if (
            record is None
            or record.status is not Status.WAITING_EXTERNAL
            or record.await_unit_id != unit.unit_id
        ):
            await self._close(unit, UnitStatus.ABANDONED)
            return
        interactions = await self.table.interactions(unit.tenant_id, unit.unit_id)
        answers = [
            {"request": json.loads(i.request), "response": json.loads(i.response or "null")}
            for i in interactions
        ]
        data = canonical(answers if unit.itemized else answers[0]).encode()
        ref = await self.payloads.put(unit.tenant_id, unit.execution_id, data)
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        now = now_ms()
        try:
            if unit.resume_step >= len(contract.steps):
                await self.store.finish_await(
                    record, await_unit_id=unit.unit_id, result=ref, now_ms=now
                )
            else:
                running = await self.store.resume(
                    record,
                    await_unit_id=unit.unit_id,
                    step_index=unit.resume_step,
                    continuation=ref,
                    now_ms=now,
                    dispatch_deadline_ms=self.dispatcher.deadline(now),
                )
                await self.dispatcher.send(running, now_ms=now, payload=data)
        except StaleRecord:
            pass  # another replica resumed it
        await self._close(unit, UnitStatus.COMPLETED)
        log.info(
            "await completed",
            extra={"action": "await-resume", "executionId": unit.execution_id},
        )

    async def _close(self, unit: AwaitUnit, status: UnitStatus) -> None:
        with contextlib.suppress(StaleRecord):
            await self.table.update_unit(replace(unit, status=status), expect=UnitStatus.OPEN)
        if status is not UnitStatus.COMPLETED:
            await self.table.expire(await self.table.interactions(unit.tenant_id, unit.unit_id))

    # -- deadlines ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Time out overdue awaits (on every replica: each action is conditional)."""
        interval = self.timings.sweep_interval.total_seconds()
        await repeat(
            lambda: self.sweep_once(now_ms()), stop, interval_s=interval, what="await-sweep"
        )

    async def sweep_once(self, now: int) -> int:
        found: Sequence[list[tuple[str, str]]] = await asyncio.gather(
            *(self.table.overdue(s, now_ms=now, limit=100) for s in self.shards)
        )
        acted = 0
        for tenant_id, unit_id in (u for shard in found for u in shard):
            unit = await self.table.get_unit(tenant_id, unit_id)
            if unit is None or unit.status is not UnitStatus.OPEN or unit.deadline_ms > now:
                continue
            acted += 1
            if unit.complete:  # the resume after the last completion never happened
                await self._resume(unit)
                continue
            await self._time_out(unit, now)
        return acted

    async def _time_out(self, unit: AwaitUnit, now: int) -> None:
        record = await self.store.get(unit.tenant_id, unit.execution_id)
        if (
            record is not None
            and record.status is Status.WAITING_EXTERNAL
            and record.await_unit_id == unit.unit_id
        ):
            try:
                ended = await self.store.fail(
                    record,
                    transition_key=None,
                    status=Status.FAILED,
                    error_code="AWAIT_TIMEOUT",
                    message=f"no answer to {unit.step_id!r} before its deadline",
                    now_ms=now,
                )
            except StaleRecord:
                return  # completed or cancelled meanwhile: the next sweep sees it
            metrics.TERMINAL_FAILURES.labels(status="FAILED").inc()
            await self.dead_letters.publish(ended, reason="await timed out", transition_key=None)
            log.info(
                "await timed out",
                extra={"action": "await-timeout", "executionId": unit.execution_id},
            )
        await self._close(unit, UnitStatus.TIMED_OUT)


def _interaction_key(
    record: ExecutionRecord, step_id: str, request: Any, fields: Sequence[str], item: int
) -> str:
    """From the declared request fields, else ``executionId:stepId`` (per item when itemized)."""
    if fields and isinstance(request, dict):
        return ":".join(str(request.get(f, "")) for f in fields)
    base = f"{record.execution_id}:{step_id}"
    return f"{base}:{item}" if item else base
