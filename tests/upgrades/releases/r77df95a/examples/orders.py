"""``org.example.orders``: the three-step pipeline the demo runs.

validate → price → confirm. ``price`` fails transiently once per execution when the order says
``flaky``, so the demo shows a retry: attempt 1 raises :class:`Retryable`, attempt 2 succeeds.
Money is in integer cents, so no float rounding reaches a summary.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tpf.errors import NonRetryable, Retryable
from tpf.pipeline import Pipeline, RetryPolicy, StepContext

TAX_RATE_PERCENT = 20


class _Model(BaseModel):
    # JSON says orderId, Python says order_id; dumping by alias by default keeps payloads
    # camelCase whichever way the runtime serializes them.
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class OrderIn(_Model):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)
    customer: str
    flaky: bool = False
    """Demo switch: the price step fails transiently on its first attempt."""


class ValidOrder(_Model):
    order_id: str
    amount_cents: int
    customer: str
    flaky: bool


class PricedOrder(_Model):
    order_id: str
    customer: str
    net_cents: int
    tax_cents: int
    total_cents: int


class OrderConfirmation(_Model):
    order_id: str
    total_cents: int
    summary: str


orders = Pipeline(
    "org.example.orders",
    input=OrderIn,
    retry=RetryPolicy(max_attempts=3, base_delay=timedelta(milliseconds=200)),
)


@orders.step()
def validate(order: OrderIn) -> ValidOrder:
    customer = order.customer.strip()
    if not customer:
        raise NonRetryable("an order needs a customer", error_code="INVALID_ORDER")
    return ValidOrder(
        order_id=order.order_id,
        amount_cents=order.amount_cents,
        customer=customer,
        flaky=order.flaky,
    )


@orders.step()
async def price(order: ValidOrder, ctx: StepContext) -> PricedOrder:
    if order.flaky and ctx.attempt == 1:
        raise Retryable("pricing service unavailable (demo: first attempt only)")
    tax = order.amount_cents * TAX_RATE_PERCENT // 100
    return PricedOrder(
        order_id=order.order_id,
        customer=order.customer,
        net_cents=order.amount_cents,
        tax_cents=tax,
        total_cents=order.amount_cents + tax,
    )


@orders.step()
def confirm(order: PricedOrder) -> OrderConfirmation:
    total = f"{order.total_cents // 100}.{order.total_cents % 100:02d}"
    return OrderConfirmation(
        order_id=order.order_id,
        total_cents=order.total_cents,
        summary=f"order {order.order_id} for {order.customer}: {total} confirmed",
    )
