"""Opening, admitting, completing and timing out await units; resuming exactly once.

Every step is idempotent and ordered so a crash anywhere is repaired by a retry of the same
call (a redelivered result or completion message, a client retrying its HTTP call) or by the
await sweeper, which looks at a unit at its deadline and, while requests are out, whenever it
made no progress for ``Timings.await_stall``::

    open:     interactions ─ unit (if absent) ─ admit
    admit:    reserve (cursor + tenant count, one transaction) ─ publish the reserved requests
    complete: interactions PENDING→COMPLETED + unit.done+k (one transaction per unit and batch)
              ─ if done = total: resume the execution (conditional) ─ unit COMPLETED
              ─ else: admit the next requests
    sweep:    overdue ─ complete? resume : fail AWAIT_TIMEOUT ─ unit TIMED_OUT
              stalled ─ publish the requests still out again (providers dedupe by key) ─ admit

Requests are published at least once; completions are recorded exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.awaits.completing import (
    Completed,
    CompletionRequest,
    ResponseValidator,
    canonical,
    check_found,
    claims_of,
    judge,
    locate,
)
from coordinator.awaits.model import AwaitUnit, Interaction, InteractionStatus, UnitStatus
from coordinator.awaits.tables import AwaitTable, Key, key_of
from coordinator.awaits.transports import Transport, Transports
from coordinator.dead_letters import DeadLetterPublisher
from coordinator.dispatcher import Dispatcher
from coordinator.identities import correlation_id
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import ConfigurationError, Conflict, StaleRecord, TpfError
from tpf.loops import repeat
from tpf.payloads import PayloadRef, PayloadStore
from tpf.queues import Queue
from tpf.records import ExecutionRecord, Status
from tpf.registry import Registry
from tpf.settings import Timings
from tpf.signing import Signer
from tpf.wire import Payload, Suspension

log = logging.getLogger("tpf.coordinator")

__all__ = ["Admission", "AwaitService", "Completed", "CompletionRequest", "canonical"]


@dataclass(frozen=True)
class Admission:
    """How many await requests may be out at once (REFERENCE section 3)."""

    per_unit: int = 200
    per_tenant: int = 2_000


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
        admission: Admission | None = None,
        answers: Queue | None = None,
        shards: int = 4,
    ) -> None:
        self.table, self.store, self.registry = table, store, registry
        self.payloads, self.dispatcher, self.dead_letters = payloads, dispatcher, dead_letters
        self.transports, self.signer, self.timings = transports, signer, timings
        self.admission = admission or Admission()
        self.answers = answers
        """The completion queue, consulted before deciding an await has stalled."""
        self.shards = [str(i) for i in range(shards)]
        # Rounds of completions run concurrently; those of one unit record one at a time, so
        # they never contend for its counter (and a store without isolated transactions
        # cannot count one answer twice).
        self._recording: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    # -- open ---------------------------------------------------------------------------------

    async def open(
        self, record: ExecutionRecord, suspension: Suspension, *, resume_step: int
    ) -> None:
        """Store the unit and its interactions of a just-parked execution, then admit."""
        assert record.await_unit_id is not None
        unit_id, now = record.await_unit_id, now_ms()
        existing = await self.table.get_unit(record.tenant_id, unit_id)
        if existing is None:
            unit, interactions = await self._build(record, suspension, resume_step, now)
            await self.table.create(unit, interactions)
            existing = await self.table.get_unit(unit.tenant_id, unit_id)
        if existing is None or existing.status is not UnitStatus.OPEN:
            return
        if existing.complete:  # an expansion of no items waits for nothing
            await self._resume(existing)
            return
        if existing.published < existing.total:
            await self._admit(existing, now)
        log.info(
            "await opened",
            extra={
                "action": "await-open",
                "executionId": existing.execution_id,
                "unitId": unit_id,
                "items": existing.total,
            },
        )

    async def _build(
        self, record: ExecutionRecord, suspension: Suspension, resume_step: int, now: int
    ) -> tuple[AwaitUnit, list[Interaction]]:
        assert record.await_unit_id is not None
        contract = await self.registry.contract(record.pipeline_id, record.contract_version)
        step = contract.step(suspension.step_id)
        fields = step.await_.idempotency_fields if step.await_ else ()
        requests = await self._requests(record, suspension.requests)
        deadline = now + suspension.timeout_ms
        inbox = not self._bounded(suspension.transport)
        interactions = []
        for item, request in enumerate(requests):
            key = _interaction_key(record, suspension.step_id, request, fields, item)
            interactions.append(
                Interaction(
                    tenant_id=record.tenant_id,
                    unit_id=record.await_unit_id,
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
                    inbox=inbox,
                )
            )
        unit = AwaitUnit(
            # An inbox has nothing to admit: every request is "sent" by being stored.
            published=0 if not inbox else len(interactions),
            tenant_id=record.tenant_id,
            unit_id=record.await_unit_id,
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
        return unit, interactions

    async def _requests(self, record: ExecutionRecord, payload: Payload) -> list[Any]:
        if payload.payload_ref is not None:
            ref = PayloadRef(tier=payload.payload_ref.tier, digest=payload.payload_ref.digest)
            text = (await self.payloads.get(record.tenant_id, record.execution_id, ref)).decode()
        else:
            text = payload.payload or "[]"
        value = json.loads(text)
        return value if isinstance(value, list) else [value]

    # -- admission ----------------------------------------------------------------------------

    def _bounded(self, transport_name: str) -> bool:
        """Whether admission limits a transport; a human inbox has nothing to flood."""
        try:
            transport = self.transports.get(transport_name)
        except ConfigurationError:
            return True
        return bool(getattr(transport, "admission", True))

    def _transport(self, unit: AwaitUnit) -> Transport | None:
        try:
            return self.transports.get(unit.transport)
        except ConfigurationError as exc:
            # Nothing is published; the deadline ends the await, and the message says what to add.
            log.error(str(exc), extra={"action": "await-open", "executionId": unit.execution_id})
            return None

    async def _admit(self, unit: AwaitUnit, now: int) -> None:
        """Reserve the next requests (unit cursor and tenant count together), then send them."""
        transport = self._transport(unit)
        if transport is None:
            return
        bounded = self._bounded(unit.transport)
        limits = self.admission
        stall_ms = int(self.timings.await_stall.total_seconds() * 1000)
        for _ in range(5):
            target = min(unit.total, unit.done + limits.per_unit) if bounded else unit.total
            upto = max(unit.published, target)
            moved = replace(
                unit,
                published=upto,
                accounted=upto - unit.done if bounded else 0,
                wake_ms=now + stall_ms if bounded and upto > unit.done else None,
            )
            try:
                if not await self.table.advance(unit, moved, tenant_limit=limits.per_tenant):
                    # The tenant is at its limit: take what room is left, look again soon.
                    room = limits.per_tenant - await self.table.tenant_in_flight(unit.tenant_id)
                    upto = max(unit.published, min(upto, unit.done + unit.accounted + room))
                    retry_at = now + int(self.timings.sweep_interval.total_seconds() * 2000)
                    moved = replace(
                        moved,
                        published=upto,
                        accounted=upto - unit.done,
                        wake_ms=retry_at if upto < target else moved.wake_ms,
                    )
                    if not await self.table.advance(unit, moved, tenant_limit=limits.per_tenant):
                        return  # still full; the sweeper comes back at wake_ms
            except StaleRecord:
                fresh = await self.table.get_unit(unit.tenant_id, unit.unit_id)
                if fresh is None or fresh.status is not UnitStatus.OPEN or fresh.complete:
                    return
                unit = fresh
                continue
            if upto > unit.published:
                await self._publish(transport, moved, start=unit.published, stop=upto)
            return

    async def _publish(
        self, transport: Transport, unit: AwaitUnit, *, start: int, stop: int
    ) -> None:
        found = await self.table.interactions(unit.tenant_id, unit.unit_id, start=start, stop=stop)
        waiting = [i for i in found if i.status is InteractionStatus.PENDING]
        if waiting:
            await transport.publish(
                unit, waiting, {i.interaction_id: self._token(i) for i in waiting}
            )

    async def _republish(self, unit: AwaitUnit) -> None:
        """Send again what is out and unanswered: the provider may have lost it.

        Not while requests wait unread, nor answers unrecorded: someone is only behind, and
        more copies would bury them deeper.
        """
        transport = self._transport(unit)
        if transport is None or not unit.published:
            return
        backlog = getattr(transport, "backlog", None)
        if backlog is not None and await backlog() > 0:
            return
        if self.answers is not None and await self.answers.backlog() > 0:
            return
        await self._publish(transport, unit, start=0, stop=unit.published)
        log.info(
            "await requests sent again after a stall",
            extra={"action": "await-republish", "executionId": unit.execution_id},
        )

    def _token(self, i: Interaction) -> str:
        return self.signer.mint_token(claims_of(i))

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
        request = CompletionRequest(
            tenant_id=tenant_id,
            response=response,
            interaction_id=interaction_id,
            correlation=correlation,
            resume_token=resume_token,
            idempotency_key=idempotency_key,
            actor=actor,
        )
        [outcome] = await self.complete_many([request])
        if isinstance(outcome, TpfError):
            raise outcome
        return outcome

    async def complete_many(
        self, requests: Sequence[CompletionRequest]
    ) -> list[Completed | TpfError]:
        """Judge and record a batch; one outcome per request, in order.

        A refusal (unknown, conflicting, late, invalid) is that request's outcome; an outage
        raises, and the whole batch may be retried: recorded ones come back as duplicates.
        """
        now = now_ms()
        outcomes: list[Completed | TpfError | None] = [None] * len(requests)
        located: dict[int, tuple[Key, dict[str, object]]] = {}
        for n, request in enumerate(requests):
            try:
                located[n] = await locate(request, self.table, self.signer)
            except TpfError as exc:
                outcomes[n] = exc
        found = await self.table.get_interactions([key for key, _ in located.values()])
        validator = ResponseValidator(self.store, self.registry)
        chosen: dict[Key, tuple[int, Interaction]] = {}
        later: list[int] = []  # a second answer to an interaction answered earlier in the batch
        for n, (key, claims) in located.items():
            try:
                interaction = check_found(requests[n], found.get(key), claims)
                if key in chosen:
                    later.append(n)
                    continue
                verdict = await judge(interaction, requests[n], now=now, validator=validator)
            except TpfError as exc:
                outcomes[n] = exc
                continue
            if isinstance(verdict, Completed):
                outcomes[n] = verdict
            else:
                chosen[key] = (n, verdict)
        await self._record(chosen, requests, outcomes, now, validator)
        for n in later:
            outcomes[n] = await self._judge_again(requests[n], located[n][0], now, validator)
        units = {
            (o.interaction.tenant_id, o.interaction.unit_id)
            for o in outcomes
            if isinstance(o, Completed)
        }
        for tenant_id, unit_id in sorted(units):
            await self._progress(tenant_id, unit_id, now)
        return [
            o if o is not None else Conflict("not judged", code="AWAIT_CONTENDED") for o in outcomes
        ]

    async def _record(
        self,
        chosen: dict[Key, tuple[int, Interaction]],
        requests: Sequence[CompletionRequest],
        outcomes: list[Completed | TpfError | None],
        now: int,
        validator: ResponseValidator,
    ) -> None:
        by_unit: dict[tuple[str, str], list[Interaction]] = defaultdict(list)
        for _, done in chosen.values():
            by_unit[(done.tenant_id, done.unit_id)].append(done)
        for unit, batch in by_unit.items():
            async with self._one_at_a_time(unit):
                recorded = {key_of(i) for i in await self.table.record(batch)}
            for done in batch:
                n = chosen[key_of(done)][0]
                if key_of(done) in recorded:
                    metrics.AWAIT_COMPLETIONS.labels(outcome="recorded").inc()
                    outcomes[n] = Completed(done, duplicate=False)
                else:  # raced with another completion, a timeout or a cancel
                    outcomes[n] = await self._judge_again(requests[n], key_of(done), now, validator)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, unit: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._recording.get(unit, (asyncio.Lock(), 0))
        self._recording[unit] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._recording[unit]
            if users == 1:
                del self._recording[unit]
            else:
                self._recording[unit] = (lock, users - 1)

    async def _judge_again(
        self, request: CompletionRequest, key: Key, now: int, validator: ResponseValidator
    ) -> Completed | TpfError:
        current = await self.table.get_interaction(*key)
        if current is None or current.status is InteractionStatus.PENDING:
            return Conflict("the await this interaction belongs to is closed", code="AWAIT_CLOSED")
        try:
            verdict = await judge(current, request, now=now, validator=validator)
        except TpfError as exc:
            return exc
        if isinstance(verdict, Completed):
            return verdict
        return Conflict("the await this interaction belongs to is closed", code="AWAIT_CLOSED")

    async def _progress(self, tenant_id: str, unit_id: str, now: int) -> None:
        unit = await self.table.get_unit(tenant_id, unit_id)
        if unit is None or unit.status is not UnitStatus.OPEN:
            return
        if unit.complete:
            await self._resume(unit)
        elif self._bounded(unit.transport):
            await self._admit(unit, now)

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

    # -- resume -------------------------------------------------------------------------------

    async def _resume(self, unit: AwaitUnit) -> None:
        record = await self.store.get(unit.tenant_id, unit.execution_id)
        if (
            record is None
            or record.status is not Status.WAITING_EXTERNAL
            or record.await_unit_id != unit.unit_id
        ):
            await self._close(unit, UnitStatus.ABANDONED, record=record)
            return
        interactions = await self.table.interactions(unit.tenant_id, unit.unit_id)
        unanswered = sum(1 for i in interactions if i.response is None)
        if unanswered:
            # The counter says done but an answer is missing: a store whose transactions are
            # not isolated (moto's server under concurrent rounds) counted one twice. Resuming
            # would hand the step a null answer; the missing answers arrive (or are asked for
            # again after a stall) and count, and the unit resumes then.
            log.warning(
                "await unit counted complete with %d unanswered interactions; waiting",
                unanswered,
                extra={"action": "await-miscounted", "executionId": unit.execution_id},
            )
            return
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
        await self._close(unit, UnitStatus.COMPLETED, record=record, now=now)
        log.info(
            "await completed",
            extra={"action": "await-resume", "executionId": unit.execution_id},
        )

    async def _close(
        self,
        unit: AwaitUnit,
        status: UnitStatus,
        *,
        record: ExecutionRecord | None,
        now: int | None = None,
    ) -> None:
        if await self.table.close_unit(unit.tenant_id, unit.unit_id, status) is not None:
            # Only the call that closed it observes, so a unit is timed once across replicas.
            _observe_wait(unit, status, record, now_ms() if now is None else now)
        if status is not UnitStatus.COMPLETED:
            await self.table.expire(await self.table.interactions(unit.tenant_id, unit.unit_id))

    # -- deadlines and stalls -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Look at due units (on every replica: each action is conditional)."""
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
            if unit is None or unit.status is not UnitStatus.OPEN or unit.look_at_ms > now:
                continue
            acted += 1
            if unit.complete:  # the resume after the last completion never happened
                await self._resume(unit)
            elif unit.deadline_ms <= now:
                await self._time_out(unit, now)
            else:
                if unit.in_flight:
                    await self._republish(unit)
                await self._admit(unit, now)
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
        await self._close(unit, UnitStatus.TIMED_OUT, record=record, now=now)


def _observe_wait(
    unit: AwaitUnit, status: UnitStatus, record: ExecutionRecord | None, now: int
) -> None:
    """Time the unit from opening to closing, in ``tpf_await_seconds``.

    A unit its execution no longer waits for is ``abandoned`` even when the sweeper closes it
    at its deadline (a cancel leaves the unit open); it ended when the execution last changed.
    """
    waited_on = (
        record is not None
        and record.status is Status.WAITING_EXTERNAL
        and record.await_unit_id == unit.unit_id
    )
    if status is UnitStatus.COMPLETED:
        outcome, ended = "completed", now
    elif status is UnitStatus.TIMED_OUT and waited_on:
        outcome, ended = "timed_out", now
    else:
        outcome = "abandoned"
        ended = now if record is None or waited_on else min(now, record.updated_at_ms)
    metrics.AWAIT_SECONDS.labels(
        pipeline=record.pipeline_id if record is not None else "unknown",
        step=unit.step_id,
        transport=unit.transport,
        outcome=outcome,
    ).observe(max(0, ended - unit.created_at_ms) / 1000)


def _interaction_key(
    record: ExecutionRecord, step_id: str, request: Any, fields: Sequence[str], item: int
) -> str:
    """From the declared request fields, else ``executionId:stepId`` (per item when itemized)."""
    if fields and isinstance(request, dict):
        return ":".join(str(request.get(f, "")) for f in fields)
    base = f"{record.execution_id}:{step_id}"
    return f"{base}:{item}" if item else base
