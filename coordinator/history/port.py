"""The history table port and the entry it holds: one ``Change`` per state change.

``memory`` is its fake, ``dynamodb`` its adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tpf.records import ExecutionRecord, Status


@dataclass(frozen=True)
class Change:
    """One state change of one execution."""

    tenant_id: str
    execution_id: str
    version: int
    at_ms: int
    status: Status
    previous: Status | None
    step_index: int
    attempt: int
    transition_key: str | None = None
    error_code: str | None = None
    actor: str = "coordinator"
    reason: str | None = None
    worker: str | None = None
    """The worker whose result made this change, when a result made it."""

    @classmethod
    def of(
        cls,
        before: ExecutionRecord | None,
        after: ExecutionRecord,
        *,
        actor: str = "coordinator",
        reason: str | None = None,
        worker: str | None = None,
    ) -> Change:
        return cls(
            tenant_id=after.tenant_id,
            execution_id=after.execution_id,
            version=after.version,
            at_ms=after.updated_at_ms,
            status=after.status,
            previous=before.status if before is not None else None,
            step_index=after.step_index,
            attempt=after.attempt,
            transition_key=after.transition_key,
            error_code=after.error_code,
            actor=actor,
            reason=reason,
            worker=worker,
        )

    def as_json(self) -> dict[str, Any]:
        """The API's form (TPF-style camelCase)."""
        return {
            "version": self.version,
            "atEpochMs": self.at_ms,
            "status": self.status.value,
            "previousStatus": self.previous.value if self.previous else None,
            "stepIndex": self.step_index,
            "attempt": self.attempt,
            "transitionKey": self.transition_key,
            "errorCode": self.error_code,
            "actor": self.actor,
            "reason": self.reason,
            "workerId": self.worker,
        }


Group = tuple[Change, ...]
"""Consecutive changes of one execution, stored as one item keyed by the first one's version."""


class HistoryTable(Protocol):
    async def put_many(self, groups: list[Group]) -> list[Exception | None]:
        """Write up to 25 groups, one item each; one outcome per group."""

    async def list(self, tenant_id: str, execution_id: str, *, limit: int) -> list[Change]:
        """Entries in version order; of a version written twice, the later item's."""
