"""``org.pipelineframework.restaurantapproval``: an order waits for the restaurant's decision.

validate order → create pending approval (mints the ``orderId``) → await the restaurant's
decision (``ProcessAwaitRestaurantDecisionService``, in the human inbox, 30 minutes) → finalize.

Names and payloads are TPF's, so TPF's self-host clients drive it unchanged: the pending
interaction's ``requestPayload`` carries ``orderId``; a decision is ``{"accepted": {...}}`` or
``{"declined": {...}}``. A decision naming another order (or no UUID) is accepted as a
completion — the inbox cannot know better — and fails the execution at finalize, non-retryably;
re-driving it runs finalize again on the same decision, which fails again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tpf.errors import NonRetryable
from tpf.pipeline import Awaited, Pipeline, RetryPolicy, StepContext

PIPELINE_ID = "org.pipelineframework.restaurantapproval"
AWAIT_STEP = "ProcessAwaitRestaurantDecisionService"
_ORDER_NAMESPACE = uuid.UUID("2f4d7c1e-8a3b-4c6d-9e0f-1a2b3c4d5e6f")


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class PlaceOrder(_Model):
    request_id: str = Field(min_length=1)
    customer_name: str
    restaurant_name: str
    items: list[Any] = Field(min_length=1)
    total_amount: Decimal = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)


class PendingApproval(_Model):
    order_id: str
    request_id: str
    customer_name: str
    restaurant_name: str
    items: list[Any]
    total_amount: Decimal
    currency: str
    summary: str


class Accepted(_Model):
    order_id: str
    decided_at: str | None = None
    note: str | None = None


class Declined(Accepted):
    decline_reason: str | None = None


class RestaurantDecision(_Model):
    accepted: Accepted | None = None
    declined: Declined | None = None


class ApprovalResult(_Model):
    outcome: str
    order_id: str
    resolved_at: str
    summary: str


restaurant_approval = Pipeline(
    PIPELINE_ID,
    input=PlaceOrder,
    retry=RetryPolicy(max_attempts=3, base_delay=timedelta(milliseconds=200)),
)


@restaurant_approval.step()
def validate_order(order: PlaceOrder) -> PlaceOrder:
    names = order.customer_name.strip(), order.restaurant_name.strip()
    if not all(names):
        raise NonRetryable("an order names its customer and restaurant", error_code="INVALID_ORDER")
    return order.model_copy(update={"customer_name": names[0], "restaurant_name": names[1]})


@restaurant_approval.step()
def create_pending_approval(order: PlaceOrder, ctx: StepContext) -> PendingApproval:
    # Derived from the step's idempotency key: a retry or redelivery mints the same orderId.
    order_id = str(uuid.uuid5(_ORDER_NAMESPACE, ctx.idempotency_key))
    return PendingApproval(
        order_id=order_id,
        request_id=order.request_id,
        customer_name=order.customer_name,
        restaurant_name=order.restaurant_name,
        items=order.items,
        total_amount=order.total_amount,
        currency=order.currency.upper(),
        summary=(
            f"{order.customer_name} orders {len(order.items)} item(s) from "
            f"{order.restaurant_name} for {order.total_amount} {order.currency.upper()}"
        ),
    )


@restaurant_approval.await_(
    id=AWAIT_STEP, response=RestaurantDecision, timeout=timedelta(minutes=30)
)
def await_restaurant_decision(pending: PendingApproval) -> PendingApproval:
    return pending


@restaurant_approval.step()
def finalize(answer: Awaited[PendingApproval, RestaurantDecision]) -> ApprovalResult:
    pending, decision = answer.request, answer.response
    if (decision.accepted is None) == (decision.declined is None):
        raise NonRetryable(
            "a decision is either accepted or declined", error_code="DECISION_INVALID"
        )
    chosen: Accepted = decision.accepted or decision.declined  # type: ignore[assignment]
    if not _is_uuid(chosen.order_id) or chosen.order_id != pending.order_id:
        raise NonRetryable(
            f"the decision is for order {chosen.order_id!r}, not the pending {pending.order_id}",
            error_code="DECISION_ORDER_MISMATCH",
        )
    resolved_at = chosen.decided_at or datetime.now(UTC).isoformat(timespec="seconds")
    if decision.accepted is not None:
        return ApprovalResult(
            outcome="APPROVED",
            order_id=pending.order_id,
            resolved_at=resolved_at,
            summary=f"{pending.restaurant_name} accepted: {pending.summary}",
        )
    reason = (decision.declined.decline_reason if decision.declined else None) or "no reason"
    return ApprovalResult(
        outcome="DECLINED",
        order_id=pending.order_id,
        resolved_at=resolved_at,
        summary=f"{pending.restaurant_name} declined ({reason}): {pending.summary}",
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
