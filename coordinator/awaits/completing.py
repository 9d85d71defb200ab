"""Judging one completion against the interaction it names (REFERENCE gap 6).

The same answer again is a duplicate (no change); a different answer to a completed interaction
is a conflict (409); an answer after the deadline is refused and counted; an answer that fits
the step's response schema turns a PENDING interaction into a COMPLETED one, to be recorded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from coordinator.awaits.model import (
    Interaction,
    InteractionStatus,
    derived_correlation,
    parse_interaction_id,
)
from coordinator.awaits.port import AwaitTable, Key
from coordinator.store import ExecutionStore
from tpf import metrics
from tpf.errors import Conflict, InvalidInput, NotFound
from tpf.payloads import digest_of
from tpf.records import ExecutionRecord
from tpf.registry import Registry
from tpf.signing import SignatureRejected, Signer

log = logging.getLogger("tpf.coordinator")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class CompletionRequest:
    """An answer to one interaction, named by id, correlation id or resume token."""

    tenant_id: str
    response: Any
    interaction_id: str | None = None
    correlation: str | None = None
    resume_token: str | None = None
    idempotency_key: str | None = None
    actor: str | None = None

    @property
    def reference(self) -> str:
        return self.interaction_id or self.correlation or "(resume token)"


@dataclass(frozen=True)
class Completed:
    interaction: Interaction
    duplicate: bool


def claims_of(i: Interaction) -> dict[str, object]:
    """What a resume token carries; every field is checked against the stored interaction."""
    return {
        "t": i.tenant_id,
        "i": i.interaction_id,
        "c": i.correlation_id,
        "e": i.execution_id,
        "s": i.step_id,
        "d": i.deadline_ms,
        "at": i.created_at_ms,
    }


async def locate(
    request: CompletionRequest, table: AwaitTable, signer: Signer
) -> tuple[Key, dict[str, object]]:
    """The key of the interaction a completion names, and the claims of its token (if any)."""
    claims: dict[str, object] = {}
    interaction_id = request.interaction_id
    if request.resume_token is not None:
        try:
            claims = signer.read_token(request.resume_token)
        except SignatureRejected as exc:
            raise InvalidInput(f"resumeToken: {exc.reason}", pointer="/resumeToken") from exc
        interaction_id = str(claims.get("i", ""))
    if interaction_id is not None:
        parsed = parse_interaction_id(interaction_id)
        if parsed is not None:
            return (request.tenant_id, *parsed), claims
    elif request.correlation is not None:
        derived = derived_correlation(request.correlation)
        if derived is not None:
            return (request.tenant_id, *derived), claims
        key = await table.by_correlation(request.correlation)
        if key is not None and key[0] == request.tenant_id:
            return key, claims
    else:
        raise InvalidInput(
            "give interactionId, correlationId or resumeToken", pointer="/interactionId"
        )
    raise NotFound(f"no interaction {request.reference} for {request.tenant_id}")


def check_found(
    request: CompletionRequest, found: Interaction | None, claims: dict[str, object]
) -> Interaction:
    if (
        found is None
        or found.tenant_id != request.tenant_id
        or request.correlation not in (None, found.correlation_id)
    ):
        raise NotFound(f"no interaction {request.reference} for {request.tenant_id}")
    if claims and claims != claims_of(found):
        raise InvalidInput("resumeToken does not match the interaction", pointer="/resumeToken")
    return found


class ResponseValidator:
    """Checks answers against their step's response schema; one record read per execution."""

    def __init__(self, store: ExecutionStore, registry: Registry) -> None:
        self.store, self.registry = store, registry
        self._pipelines: dict[tuple[str, str], tuple[str, str]] = {}
        self.records: dict[tuple[str, str], ExecutionRecord] = {}
        """Records read consistently, for the resume that follows (carried units)."""

    async def check(self, interaction: Interaction, response: Any) -> None:
        key = (interaction.tenant_id, interaction.execution_id)
        if key not in self._pipelines:
            # A carried unit's answer resumes its execution right after: read the record as
            # that resume needs it, once for both. Otherwise only its pipeline and contract
            # matter, which never change: a read that may lag does (half the RRU).
            carried = interaction.carries is not None
            record = await self.store.get(*key, consistent=carried)
            if record is None:
                raise NotFound(f"execution {interaction.execution_id} no longer exists")
            self._pipelines[key] = (record.pipeline_id, record.contract_version)
            if carried:
                self.records[key] = record
        contract = await self.registry.contract(*self._pipelines[key])
        contract.validate_await_response(interaction.step_id, response)


async def judge(
    interaction: Interaction,
    request: CompletionRequest,
    *,
    now: int,
    validator: ResponseValidator,
) -> Completed | Interaction:
    """A duplicate, or the completed interaction to record; raises Conflict or InvalidInput."""
    data = canonical(request.response)
    digest = digest_of(data.encode())
    if interaction.status is InteractionStatus.COMPLETED:
        if interaction.response_digest != digest:
            metrics.AWAIT_COMPLETIONS.labels(outcome="conflict").inc()
            raise Conflict(
                f"interaction {interaction.interaction_id} was completed with another response",
                code="INTERACTION_ALREADY_COMPLETED",
            )
        metrics.AWAIT_COMPLETIONS.labels(outcome="duplicate").inc()
        return Completed(interaction, duplicate=True)
    if interaction.status is InteractionStatus.TIMED_OUT or now > interaction.deadline_ms:
        metrics.AWAIT_COMPLETIONS.labels(outcome="late").inc()
        log.warning(
            "late completion refused",
            extra={
                "action": "await-late",
                "executionId": interaction.execution_id,
                "interactionId": interaction.interaction_id,
                "actor": request.actor,
            },
        )
        raise Conflict(
            f"interaction {interaction.interaction_id} is past its deadline",
            code="AWAIT_DEADLINE_PASSED",
        )
    await validator.check(interaction, request.response)
    return interaction.completed(
        response=data,
        digest=digest,
        key=request.idempotency_key,
        actor=request.actor,
        now_ms=now,
    )
