"""Recording completions: judge each answer, record the accepted ones exactly once (one
transaction per unit and batch), then move each touched unit on (resume or admit more)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

from coordinator.awaits.admission import Admitter
from coordinator.awaits.completing import (
    Completed,
    CompletionRequest,
    ResponseValidator,
    check_found,
    judge,
    locate,
)
from coordinator.awaits.model import (
    AwaitUnit,
    Interaction,
    InteractionStatus,
    UnitStatus,
    carried_unit,
)
from coordinator.awaits.port import AwaitTable, Key, key_of
from coordinator.awaits.resuming import Resumer
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.clock import now_ms
from tpf.errors import Conflict, TpfError
from tpf.records import ExecutionRecord
from tpf.registry import Registry
from tpf.signing import Signer

log = logging.getLogger("tpf.coordinator")


class CompletionRecorder:
    def __init__(
        self,
        *,
        table: AwaitTable,
        store: ExecutionStore,
        registry: Registry,
        signer: Signer,
        admitter: Admitter,
        resumer: Resumer,
    ) -> None:
        self.table, self.store, self.registry, self.signer = table, store, registry, signer
        self.admitter, self.resumer = admitter, resumer
        # Rounds of completions run concurrently; those of one unit record one at a time, so
        # they never contend for its counter (and a store without isolated transactions
        # cannot count one answer twice).
        self._recording: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

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
            except Exception as exc:
                outcomes[n] = _own_outcome(exc, request)
        # Read as it may lag (half the RRU): an answer is recorded by a write conditional on
        # the interaction still waiting, and one that lost it is judged again on a consistent
        # read. Only one the lagging read did not find yet (just opened) is read again now.
        keys = [key for key, _ in located.values()]
        found = await self.table.get_interactions(keys, consistent=False)
        if missing := [key for key in keys if key not in found]:
            found.update(await self.table.get_interactions(missing))
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
            except Exception as exc:
                outcomes[n] = _own_outcome(exc, requests[n])
                continue
            if isinstance(verdict, Completed):
                outcomes[n] = verdict
            else:
                chosen[key] = (n, verdict)
        await self._record(chosen, requests, outcomes, now, validator)
        for n in later:
            outcomes[n] = await self._judge_again(requests[n], located[n][0], now, validator)
        units: dict[tuple[str, str], bool] = {}  # → answered by a solo interaction
        carriers: dict[tuple[str, str], Interaction] = {}  # units that came with their answer
        for o in outcomes:
            if isinstance(o, Completed):
                unit = (o.interaction.tenant_id, o.interaction.unit_id)
                units[unit] = units.get(unit, False) or o.interaction.solo
                if o.interaction.carries is not None:
                    carriers[unit] = o.interaction
        for (tenant_id, unit_id), solo_answered in sorted(units.items()):
            try:
                carrier = carriers.get((tenant_id, unit_id))
                read = validator.records.get((tenant_id, carrier.execution_id)) if carrier else None
                await self._progress(
                    tenant_id,
                    unit_id,
                    now,
                    solo_answered=solo_answered,
                    answered=carrier,
                    record=read,
                )
            except Exception:  # recorded answers stay recorded; the stall sweep moves it later
                log.exception(
                    "await unit not moved on after its answers",
                    extra={"action": "await-progress-failed", "unitId": unit_id},
                )
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

    async def _progress(
        self,
        tenant_id: str,
        unit_id: str,
        now: int,
        *,
        solo_answered: bool,
        answered: Interaction | None = None,
        record: ExecutionRecord | None = None,
    ) -> None:
        """Resume a unit its answers completed, or admit more of its requests. ``answered``:
        the interaction that carries it, as just answered (no need to read the unit), and
        ``record`` its execution's, as read to judge that answer."""
        if answered is not None:
            unit: AwaitUnit | None = carried_unit(answered)
        else:
            unit = await self.table.get_unit(tenant_id, unit_id)
        if unit is not None and unit.carried and unit.status is UnitStatus.COMPLETED:
            # By its answer: what the record says decides whether it still matters.
            await self.resumer.resume(unit, answered=answered, record=record)
            return
        if unit is None or unit.status is not UnitStatus.OPEN:
            return
        if unit.complete or solo_answered:
            await self.resumer.resume(unit)
        elif self.admitter.bounded(unit.transport):
            await self.admitter.admit(unit, now)


class UnexpectedFailure(TpfError):
    """Judging one answer raised what no rule expects: that answer alone waits for redelivery."""


def _own_outcome(exc: Exception, request: CompletionRequest) -> TpfError:
    """An answer's own failure becomes its outcome, so the rest of its round is still judged."""
    if isinstance(exc, TpfError):
        return exc
    log.error(
        "judging an answer failed: %s",
        type(exc).__name__,
        exc_info=exc,
        extra={"action": "completion-failed", "correlationId": request.correlation},
    )
    return UnexpectedFailure(f"{type(exc).__name__} while judging the answer")
