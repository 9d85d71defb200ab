from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from examples.csv_payments.pipeline import AWAIT_STEP, csv_payments
from examples.orders import OrderIn, orders
from tpf.contract import Contract, ContractRetry
from tpf.errors import ContractError, InvalidInput, Retryable
from tpf.pipeline import Awaited, Pipeline, RetryPolicy, StepContext, StepKind, call_step


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Item(Camel):
    name: str
    quantity: int = Field(ge=1)


class OrderRequest(Camel):
    request_id: str
    customer_name: str
    items: list[Item]
    total_amount: float
    currency: str = "EUR"


class OrderRequestV2(OrderRequest):
    note: str = ""


class Pending(Camel):
    order_id: str


class Accepted(Camel):
    order_id: str
    note: str = "ünïcode ✓"


class Decision(Camel):
    accepted: Accepted | None = None
    declined: Accepted | None = None


class Result(Camel):
    outcome: str


def approval(
    *,
    first_id: str = "validate",
    swap: bool = False,
    retry: RetryPolicy | None = None,
    step_retry: RetryPolicy | None = None,
    checkpoint: bool = False,
    timeout: timedelta = timedelta(minutes=30),
    as_await: bool = True,
    input_model: type[OrderRequest] = OrderRequest,
) -> Pipeline:
    """A restaurant-approval shaped pipeline; each keyword is one way to change its contract."""
    In = input_model
    p = Pipeline("org.example.approval", input=In, retry=retry)

    def validate(r: In) -> In:  # type: ignore[valid-type]
        return r

    def enrich(r: In) -> In:  # type: ignore[valid-type]
        return r

    first, second = (enrich, validate) if swap else (validate, enrich)
    p.step(id=first_id if first is validate else "enrich", retry=step_retry)(first)
    p.step(id="enrich" if second is enrich else first_id, checkpoint=checkpoint)(second)

    @p.step()
    def pend(r: In) -> Pending:  # type: ignore[valid-type]
        return Pending(order_id="o")

    if as_await:

        @p.await_(id="ProcessAwaitRestaurantDecisionService", response=Decision, timeout=timeout)
        def ask(pending: Pending) -> Pending:
            return pending

        @p.step()
        def finalize(answer: Awaited[Pending, Decision]) -> Result:
            return Result(outcome="APPROVED")

    else:

        @p.step(id="ProcessAwaitRestaurantDecisionService")
        def ask_plain(pending: Pending) -> Pending:
            return pending

        @p.step(id="finalize")
        def finalize_plain(pending: Pending) -> Result:
            return Result(outcome="APPROVED")

    return p


def contract(**changes: Any) -> Contract:
    return Contract.from_pipeline(approval(**changes))


ORDER = {
    "requestId": "r-1",
    "customerName": "Ada",
    "items": [{"name": "soup", "quantity": 1}, {"name": "bread", "quantity": 2}],
    "totalAmount": 12.5,
    "currency": "EUR",
}


# -- identity ------------------------------------------------------------------------------------


def test_the_same_pipeline_declared_twice_has_the_same_version() -> None:
    one, two = contract(), contract()
    assert approval() is not approval()
    assert one.canonical_json() == two.canonical_json()
    assert one.version == two.version
    assert one.version.startswith("sha256:") and len(one.version) == len("sha256:") + 64


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"first_id": "check"}, id="step id"),
        pytest.param({"swap": True}, id="step order"),
        pytest.param({"as_await": False}, id="step kind"),
        pytest.param({"checkpoint": True}, id="checkpoint flag"),
        pytest.param({"step_retry": RetryPolicy(max_attempts=5)}, id="step retry policy"),
        pytest.param({"retry": RetryPolicy(base_delay=timedelta(seconds=2))}, id="default retry"),
        pytest.param({"timeout": timedelta(minutes=31)}, id="await timeout"),
        pytest.param({"input_model": OrderRequestV2}, id="input schema"),
    ],
)
def test_the_version_changes_with_every_kind_of_change(change: dict[str, Any]) -> None:
    assert contract(**change).version != contract().version


def test_a_changed_response_schema_changes_the_version() -> None:
    base = contract()
    document = json.loads(base.canonical_json())
    response = document["steps"][3]["await"]["response"]["schema"]
    response["properties"]["extra"] = {"type": "string"}
    assert Contract.model_validate(document).version != base.version


def test_a_contract_survives_a_json_round_trip_with_the_same_version() -> None:
    original = contract()
    original.validate_input(ORDER)  # fills the private caches, which must not affect equality
    loaded = Contract.model_validate_json(original.canonical_json())
    assert loaded == original
    assert loaded.model_dump() == original.model_dump()
    assert {loaded, original} == {original}
    assert loaded.version == original.version
    assert Contract.from_json(original.canonical_json().decode()).version == original.version


def test_the_canonical_json_is_compact_sorted_camel_case_utf8() -> None:
    raw = contract().canonical_json()
    text = raw.decode("utf-8")
    assert "ünïcode ✓" in text  # ensure_ascii=False: no \\u escapes
    assert ": " not in text and ", " not in text
    document = json.loads(raw)
    assert list(document) == sorted(document)
    assert document["schemaVersion"] == 1
    assert document["pipelineId"] == "org.example.approval"
    assert set(document["steps"][0]) == {
        "index", "id", "kind", "cardinality", "checkpoint", "perItem", "itemized",
        "inputTypeId", "outputTypeId", "retry", "await",
    }  # fmt: skip
    assert document["steps"][0]["retry"] == {
        "maxAttempts": 3,
        "baseDelayMs": 1000,
        "multiplier": 2.0,
        "capMs": 900_000,
    }


def test_an_await_step_carries_its_policy_and_response_schema() -> None:
    step = contract().step("ProcessAwaitRestaurantDecisionService")
    assert step.kind is StepKind.AWAIT
    assert step.await_ is not None
    assert step.await_.transport == "interaction-api"
    assert step.await_.timeout_ms == 30 * 60 * 1000
    assert step.await_.on_timeout == "FAIL"
    assert step.await_.idempotency_fields == ()
    assert step.await_.response.type_id == "tests.unit.test_contract.Decision"
    assert "accepted" in step.await_.response.json_schema["properties"]
    assert contract().await_steps == (step,)
    assert contract().boundaries == (4, 5)
    assert contract().next_boundary(0) == 4


def dict_permutations(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: dict_permutations(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [dict_permutations(v, rng) for v in value]
    return value


@settings(max_examples=50, deadline=None)
@given(seed=st.integers())
def test_canonical_json_is_stable_under_key_order_permutations(seed: int) -> None:
    original = contract()
    shuffled = dict_permutations(json.loads(original.canonical_json()), random.Random(seed))
    loaded = Contract.model_validate(shuffled)
    assert loaded.canonical_json() == original.canonical_json()
    assert loaded.version == original.version


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda d: d.update(unknown=1), id="unknown field"),
        pytest.param(lambda d: d.update(boundaries=[5]), id="boundaries"),
        pytest.param(lambda d: d["steps"][1].update(index=7), id="indexes"),
        pytest.param(lambda d: d["steps"][1].update(id="validate"), id="duplicate ids"),
        pytest.param(lambda d: d["steps"][3].update({"await": None}), id="await without policy"),
        pytest.param(lambda d: d["input"].update(schema={"type": 5}), id="bad schema"),
    ],
)
def test_an_inconsistent_document_is_refused(corrupt: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(contract().canonical_json())
    corrupt(document)
    with pytest.raises(ContractError):
        Contract.from_json(json.dumps(document))


def test_looking_up_an_unknown_step_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="no step 'nope'"):
        contract().step("nope")


# -- validation ----------------------------------------------------------------------------------


def invalid(check: Callable[[], None]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        check()
    return caught.value


def test_a_valid_input_passes() -> None:
    contract().validate_input(ORDER)


def test_a_wrong_type_points_at_the_field() -> None:
    error = invalid(lambda: contract().validate_input({**ORDER, "totalAmount": "lots"}))
    assert error.pointer == "/totalAmount"
    assert "'lots' is not of type 'number'" in str(error)


def test_a_missing_field_points_at_the_missing_property() -> None:
    data = {k: v for k, v in ORDER.items() if k != "customerName"}
    error = invalid(lambda: contract().validate_input(data))
    assert error.pointer == "/customerName"
    assert "required" in str(error)


def test_a_bad_nested_list_item_points_into_the_list() -> None:
    data = {**ORDER, "items": [{"name": "soup", "quantity": 1}, {"name": "bread", "quantity": 0}]}
    assert invalid(lambda: contract().validate_input(data)).pointer == "/items/1/quantity"
    data = {**ORDER, "items": [{"name": "soup", "quantity": 1}, {"quantity": 2}]}
    assert invalid(lambda: contract().validate_input(data)).pointer == "/items/1/name"


def test_a_whole_document_of_the_wrong_type_points_at_the_root() -> None:
    assert invalid(lambda: contract().validate_input(["not", "an", "object"])).pointer == ""


def test_pointers_escape_tilde_and_slash_and_name_forbidden_extras() -> None:
    class Odd(BaseModel):
        model_config = ConfigDict(extra="forbid")
        weird: int = Field(alias="a/b~c")

    p = Pipeline("org.example.odd", input=Odd)

    @p.step()
    def same(o: Odd) -> Odd:
        return o

    odd = Contract.from_pipeline(p)
    assert invalid(lambda: odd.validate_input({"a/b~c": "x"})).pointer == "/a~1b~0c"
    assert invalid(lambda: odd.validate_input({})).pointer == "/a~1b~0c"
    assert invalid(lambda: odd.validate_input({"a/b~c": 1, "zz": 1})).pointer == "/zz"


def test_a_long_offending_value_does_not_flood_the_message() -> None:
    error = invalid(lambda: contract().validate_input(["x" * 10_000]))
    assert len(str(error)) <= 300


def test_an_await_response_is_validated_against_its_step_schema() -> None:
    c = contract()
    step_id = "ProcessAwaitRestaurantDecisionService"
    c.validate_await_response(step_id, {"accepted": {"orderId": "o-1"}})
    error = invalid(lambda: c.validate_await_response(step_id, {"accepted": {"note": "hi"}}))
    assert error.pointer == "/accepted/orderId"
    with pytest.raises(ContractError, match="not an await step"):
        c.validate_await_response("validate", {})
    with pytest.raises(ContractError, match="no step"):
        c.validate_await_response("missing", {})


def test_a_loaded_contract_validates_without_the_pipeline_code() -> None:
    loaded = Contract.from_json(contract().canonical_json())
    data = {k: v for k, v in ORDER.items() if k != "requestId"}
    assert invalid(lambda: loaded.validate_input(data)).pointer == "/requestId"


def test_the_contract_retry_backs_off_exponentially_up_to_the_cap() -> None:
    retry = ContractRetry.of(RetryPolicy(base_delay=timedelta(seconds=1), cap=timedelta(seconds=5)))
    assert [retry.backoff(n) for n in (1, 2, 3, 4, 100)] == [
        timedelta(seconds=s) for s in (1, 2, 4, 5, 5)
    ]


# -- the example pipeline ------------------------------------------------------------------------


def test_the_example_orders_pipeline_has_a_three_step_contract() -> None:
    c = Contract.from_pipeline(orders)
    assert c.pipeline_id == "org.example.orders"
    assert [s.id for s in c.steps] == ["validate", "price", "confirm"]
    assert c.boundaries == (3,)
    assert c.retry.max_attempts == 3
    assert c.version == Contract.from_json(c.canonical_json()).version
    c.validate_input({"orderId": "o-1", "amountCents": 1250, "customer": "Ada"})
    bad = {"orderId": "o-1", "amountCents": 0, "customer": "Ada"}
    assert invalid(lambda: c.validate_input(bad)).pointer == "/amountCents"


async def test_the_example_pipeline_fails_once_when_flaky_then_confirms() -> None:
    def ctx(index: int, attempt: int) -> StepContext:
        return StepContext("t", "e", orders.id, orders.step(index).id, index, attempt,
                           f"e:{index}:{attempt}", f"t:e:{index}", "1")  # fmt: skip

    order = OrderIn.model_validate({"orderId": "o-1", "amountCents": 1000, "customer": " Ada "})
    valid = await call_step(orders.step(0), order.model_copy(update={"flaky": True}), ctx(0, 1))
    with pytest.raises(Retryable):
        await call_step(orders.step(1), valid, ctx(1, 1))
    priced = await call_step(orders.step(1), valid, ctx(1, 2))
    done = await call_step(orders.step(2), priced, ctx(2, 1))
    assert done.model_dump() == {
        "orderId": "o-1",
        "totalCents": 1200,
        "summary": "order o-1 for Ada: 12.00 confirmed",
    }


def test_an_expansion_is_described_by_cardinality_per_item_and_itemized_flags() -> None:
    from tests.unit.test_pipeline import payments

    document = json.loads(Contract.from_pipeline(payments()).canonical_json())
    steps = document["steps"]
    assert [s["cardinality"] for s in steps] == [
        "ONE_TO_MANY", "ONE_TO_ONE", "ONE_TO_ONE", "ONE_TO_ONE", "MANY_TO_ONE",
    ]  # fmt: skip
    assert [s["kind"] for s in steps] == ["expand", "step", "await", "step", "collect"]
    assert [s["perItem"] for s in steps] == [False, True, True, True, False]
    assert [s["itemized"] for s in steps] == [False, False, True, False, False]
    assert steps[0]["outputTypeId"] == "list[tests.unit.test_pipeline.Row]"
    assert steps[2]["await"]["transport"] == "sqs"
    assert steps[1]["retry"]["maxAttempts"] == 7
    assert document["retry"]["maxAttempts"] == 4
    assert document["boundaries"] == [3, 4, 5]


def test_an_exclusive_await_is_in_the_contract_and_others_keep_their_version() -> None:
    contract = Contract.from_pipeline(csv_payments)
    awaits = contract.step(AWAIT_STEP).await_
    assert awaits is not None and awaits.exclusive_ms == 400 * 24 * 3600 * 1000
    assert Contract.from_json(contract.canonical_json()).version == contract.version
    # A contract without the field (every one written before it existed) hashes as it did.
    plain = Contract.from_pipeline(approval())
    assert b"exclusiveMs" not in plain.canonical_json()
