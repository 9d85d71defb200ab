"""The interaction routes of the control-plane API (REFERENCE section 5): the human inbox.

``GET .../interactions/pending`` lists what waits for an answer; ``POST .../complete`` answers by
``interactionId``, ``correlationId`` or ``resumeToken``, with the response in TPF's payload
envelope (plain JSON or the ``java.util.Map`` item form). ``GET .../executions/{id}/await``
(ours) says how far the await an execution waits on is answered.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from coordinator.api import CONTROL_PLANE, bearer, parse_body
from coordinator.awaits import AwaitService
from coordinator.awaits.model import AwaitUnit, Interaction
from tpf.codec import decode_envelope
from tpf.errors import InvalidInput


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    interactionId: str | None = None
    correlationId: str | None = None
    resumeToken: str | None = None
    idempotencyKey: str | None = Field(default=None, max_length=256)
    responsePayload: dict[str, Any]
    actor: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _one_reference(self) -> CompleteRequest:
        if not (self.interactionId or self.correlationId or self.resumeToken):
            raise ValueError("give interactionId, correlationId or resumeToken")
        return self


def pending_body(i: Interaction, output_type: str | None = None) -> dict[str, Any]:
    """TPF's ``AwaitInteractionDto``. A pending interaction is ``WAITING`` (for a person) or
    ``DISPATCHED`` (its request is out to a provider), as upstream names them; ``assignee`` and
    ``group`` are the request's fields of those names."""
    request = json.loads(i.request)
    fields = request if isinstance(request, dict) else {}
    return {
        "interactionId": i.interaction_id,
        "correlationId": i.correlation_id,
        "executionId": i.execution_id,
        "stepId": i.step_id,
        "stepIndex": i.step_index,
        "outputType": output_type,
        "status": "WAITING" if i.inbox else "DISPATCHED",
        "requestPayload": request,
        "assignee": _text(fields.get("assignee")),
        "group": _text(fields.get("group")),
        "transportType": "interaction-api" if i.inbox else "sqs",
        "transportMetadata": {},
        "deadlineEpochMs": i.deadline_ms,
        "createdAtEpochMs": i.created_at_ms,
        "updatedAtEpochMs": i.created_at_ms,
    }


def unit_body(unit: AwaitUnit) -> dict[str, Any]:
    return {
        "executionId": unit.execution_id,
        "unitId": unit.unit_id,
        "stepId": unit.step_id,
        "stepIndex": unit.step_index,
        "itemized": unit.itemized,
        "status": unit.status.value,
        "answered": unit.done,
        "total": unit.total,
        "deadlineEpochMs": unit.deadline_ms,
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def interactions_router(awaits: AwaitService) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PLANE, dependencies=[bearer("control_plane_token")])

    @router.get("/tenants/{tenant_id}/interactions/pending")
    async def pending(
        tenant_id: str,
        assignee: str | None = None,
        group: str | None = None,
        stepId: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Oldest first; ``limit`` is clamped to 1..1000, as upstream does, never refused."""
        waiting = await awaits.waiting(
            tenant_id,
            step_id=stepId or None,
            assignee=assignee or None,
            group=group or None,
            limit=max(1, min(limit, 1000)),
        )
        return [pending_body(i, response_type) for i, response_type in waiting]

    @router.get("/tenants/{tenant_id}/executions/{execution_id}/await")
    async def waited_on(tenant_id: str, execution_id: str) -> dict[str, Any]:
        """The await the execution waits on: of its ``total`` interactions (one per item when
        itemized), how many are ``answered``; 404 when it waits on none."""
        return unit_body(await awaits.waited_on(tenant_id, execution_id))

    @router.post("/tenants/{tenant_id}/interactions/complete")
    async def complete(tenant_id: str, request: Request) -> dict[str, Any]:
        body = await parse_body(request, CompleteRequest)
        response = decode_envelope(body.responsePayload, pointer="/responsePayload")
        try:
            outcome = await awaits.complete(
                tenant_id,
                response=response,
                interaction_id=body.interactionId,
                correlation=body.correlationId,
                resume_token=body.resumeToken,
                idempotency_key=body.idempotencyKey,
                actor=body.actor,
            )
        except InvalidInput as exc:
            if exc.pointer.startswith(("/resumeToken", "/interactionId")):
                raise
            # The response broke the await's schema: point into the payload that was sent.
            pointer = "/responsePayload/payload" + exc.pointer
            raise InvalidInput(str(exc), pointer=pointer) from exc
        return {
            "interactionId": outcome.interaction.interaction_id,
            "executionId": outcome.interaction.execution_id,
            "stepId": outcome.interaction.step_id,
            "status": outcome.interaction.status.value,
            "duplicate": outcome.duplicate,
        }

    return router
