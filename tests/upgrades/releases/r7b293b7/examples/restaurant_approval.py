"""``org.pipelineframework.restaurantapproval``: an order waits for the restaurant's decision.

validate the order → create the pending approval (mints the ``orderId``) → await the
restaurant's decision (``ProcessAwaitRestaurantDecisionService``, in the human inbox, 30
minutes) → finalize it into the order's terminal state.

The models are TPF's (upstream ``examples/restaurant-approval/common/.../domain``), field for
field and in the JSON forms TPF's clients send and read, so its self-host demo client drives
this pipeline unchanged:

- ``PlaceRestaurantOrderRequest``: ``requestId`` a UUID, ``items`` one string,
  ``totalAmount`` a decimal (a JSON number or a numeric string);
- ``PendingRestaurantApproval``: the interaction's ``requestPayload``, carrying ``orderId``;
- ``RestaurantDecision``: ``{"accepted": {...}}`` or ``{"declined": {...}}``, with or without
  ``"type"``, nested or flat, read as leniently as TPF reads it;
- ``TerminalOrderState``: ``id``, ``orderId``, ``outcome``, ``resolvedAt``,
  ``restaurantStatus``, ``summary``.

A decision is checked when the execution resumes, as upstream does: the inbox accepts any
decision-shaped answer, and one whose ``orderId`` is no UUID or whose ``decidedAt`` is no
instant fails the execution at finalize (``DECISION_INVALID``, not retried: the same answer
would fail again). Two differences, both deliberate: an order must name its customer and
restaurant (``INVALID_ORDER``), and a decision for another order than the pending one fails
(``DECISION_ORDER_MISMATCH``). Ids are derived from the step's idempotency key rather than
random, so a retried step mints the same ``orderId``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel

from tpf.errors import NonRetryable
from tpf.pipeline import Awaited, Pipeline, RetryPolicy, StepContext

PIPELINE_ID = "org.pipelineframework.restaurantapproval"
AWAIT_STEP = "ProcessAwaitRestaurantDecisionService"
_IDS = uuid.UUID("2f4d7c1e-8a3b-4c6d-9e0f-1a2b3c4d5e6f")


Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
"""A decimal read from a number or a numeric string, and written as a JSON number, as TPF's
``BigDecimal`` is (the value, not its trailing zeros: ``27.50`` is written ``27.5``)."""


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class PlaceRestaurantOrderRequest(_Model):
    id: uuid.UUID | None = None
    request_id: uuid.UUID | None = None
    customer_name: str | None = None
    restaurant_name: str | None = None
    items: str | None = None
    total_amount: Amount | None = None
    currency: str | None = None


class ValidatedRestaurantOrderRequest(PlaceRestaurantOrderRequest):
    validated_at: datetime


class PendingRestaurantApproval(_Model):
    id: uuid.UUID
    order_id: uuid.UUID
    request_id: uuid.UUID | None = None
    customer_name: str | None = None
    restaurant_name: str | None = None
    items: str | None = None
    total_amount: Amount | None = None
    currency: str | None = None
    created_at: datetime


class DecisionFields(_Model):
    """A decision's fields as sent: checked at finalize, not when the answer arrives."""

    order_id: str | None = None
    decided_at: str | None = None
    note: str | None = None
    decline_reason: str | None = None


class RestaurantDecision(DecisionFields):
    """TPF's decision union as its clients write it: ``type`` names the variant, or the
    variant is the one of ``accepted`` / ``declined`` present; its fields are nested under
    that key, or flat beside it."""

    type: Literal["accepted", "declined"] | None = None
    accepted: DecisionFields | None = None
    declined: DecisionFields | None = None


class RestaurantOrderAccepted(_Model):
    order_id: uuid.UUID
    decided_at: AwareDatetime
    note: str = ""


class RestaurantOrderDeclined(RestaurantOrderAccepted):
    decline_reason: str = "no reason provided"


class TerminalOrderState(_Model):
    id: uuid.UUID
    order_id: uuid.UUID
    outcome: Literal["APPROVED", "DECLINED"]
    resolved_at: datetime
    restaurant_status: Literal["ACCEPTED", "DECLINED"]
    summary: str


restaurant_approval = Pipeline(
    PIPELINE_ID,
    input=PlaceRestaurantOrderRequest,
    retry=RetryPolicy(max_attempts=3, base_delay=timedelta(milliseconds=200)),
)


@restaurant_approval.step(id="ProcessValidateOrderRequestService")
def validate_order_request(order: PlaceRestaurantOrderRequest) -> ValidatedRestaurantOrderRequest:
    names = (order.customer_name or "").strip(), (order.restaurant_name or "").strip()
    if not all(names):
        raise NonRetryable("an order names its customer and restaurant", error_code="INVALID_ORDER")
    return ValidatedRestaurantOrderRequest(
        **order.model_dump(exclude={"customer_name", "restaurant_name"}),
        customer_name=names[0],
        restaurant_name=names[1],
        validated_at=datetime.now(UTC),
    )


@restaurant_approval.step(id="ProcessCreatePendingApprovalService")
def create_pending_approval(
    order: ValidatedRestaurantOrderRequest, ctx: StepContext
) -> PendingRestaurantApproval:
    # From the step's idempotency key: a retry or redelivery mints the same orderId.
    return PendingRestaurantApproval(
        id=uuid.uuid5(_IDS, f"pending:{ctx.idempotency_key}"),
        order_id=uuid.uuid5(_IDS, ctx.idempotency_key),
        request_id=order.request_id,
        customer_name=order.customer_name,
        restaurant_name=order.restaurant_name,
        items=order.items,
        total_amount=order.total_amount,
        currency=order.currency,
        created_at=datetime.now(UTC),
    )


@restaurant_approval.await_(
    id=AWAIT_STEP,
    response=RestaurantDecision,
    timeout=timedelta(minutes=30),
    idempotency_fields=("orderId",),
)
def await_restaurant_decision(pending: PendingRestaurantApproval) -> PendingRestaurantApproval:
    return pending


@restaurant_approval.step(id="ProcessFinalizeRestaurantDecisionService")
def finalize_restaurant_decision(
    answer: Awaited[PendingRestaurantApproval, RestaurantDecision], ctx: StepContext
) -> TerminalOrderState:
    pending, chosen = answer.request, decided(answer.response)
    if chosen.order_id != pending.order_id:
        raise NonRetryable(
            f"the decision is for order {chosen.order_id}, not the pending {pending.order_id}",
            error_code="DECISION_ORDER_MISMATCH",
        )
    note = chosen.note.strip()
    terminal = TerminalOrderState(
        id=uuid.uuid5(_IDS, f"terminal:{ctx.idempotency_key}"),
        order_id=chosen.order_id,
        outcome="APPROVED",
        resolved_at=chosen.decided_at,
        restaurant_status="ACCEPTED",
        summary=note or "Restaurant approved the order.",
    )
    if isinstance(chosen, RestaurantOrderDeclined):
        reason = chosen.decline_reason.strip() or "no reason provided"
        declined = {"outcome": "DECLINED", "restaurant_status": "DECLINED"}
        summary = f"{note} ({reason})" if note else reason
        terminal = terminal.model_copy(update={**declined, "summary": summary})
    return terminal


def decided(decision: RestaurantDecision) -> RestaurantOrderAccepted | RestaurantOrderDeclined:
    """The variant a decision names, validated; ``DECISION_INVALID`` when it names none or its
    ``orderId`` is no UUID or its ``decidedAt`` no instant."""
    variant = decision.type or (
        "accepted"
        if decision.accepted is not None
        else "declined"
        if decision.declined is not None or decision.decline_reason is not None
        else "accepted"
        if decision.order_id is not None and decision.decided_at is not None
        else None
    )
    if variant is None:
        raise NonRetryable(
            "a decision is either accepted or declined", error_code="DECISION_INVALID"
        )
    fields = getattr(decision, variant) or decision  # nested under its key, or flat
    values = fields.model_dump(exclude_none=True, by_alias=False)
    kind = RestaurantOrderAccepted if variant == "accepted" else RestaurantOrderDeclined
    try:
        return kind.model_validate({k: v for k, v in values.items() if k in kind.model_fields})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NonRetryable(
            f"the {variant} decision is invalid: {problems}", error_code="DECISION_INVALID"
        ) from None
