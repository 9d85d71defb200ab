# Postponed annotations on purpose: the step annotations below name models declared inside the
# test functions, which is what the pipeline's annotation resolution has to cope with.
from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from tpf.errors import ContractError
from tpf.pipeline import (
    Awaited,
    AwaitedOnce,
    Cardinality,
    Pipeline,
    RetryPolicy,
    StepContext,
    StepKind,
    call_step,
    idempotency_key,
    type_id,
)


class File(BaseModel):
    name: str


class Row(BaseModel):
    n: int


class Pending(BaseModel):
    n: int


class Verdict(BaseModel):
    ok: bool


class Settled(BaseModel):
    n: int
    ok: bool


class Report(BaseModel):
    total: int


def payments() -> Pipeline:
    """expand → per-item step → itemized await → per-item step (checkpoint) → collect."""
    p = Pipeline("org.example.payments", input=File, retry=RetryPolicy(max_attempts=4))

    @p.expand()
    def rows(f: File) -> list[Row]:
        return [Row(n=i) for i in range(3)]

    @p.step(retry=RetryPolicy(max_attempts=7))
    def prepare(r: Row) -> Pending:
        return Pending(n=r.n)

    @p.await_(id="AwaitProvider", response=Verdict, transport="sqs", timeout=timedelta(hours=1))
    def ask(pending: Pending) -> Pending:
        return pending

    @p.step(checkpoint=True)
    def settle(answer: Awaited[Pending, Verdict], ctx: StepContext) -> Settled:
        return Settled(n=answer.request.n, ok=answer.response.ok)

    @p.collect()
    def publish(results: list[Settled]) -> Report:
        return Report(total=len(results))

    return p


def single(model: type[BaseModel] = Row) -> Pipeline:
    return Pipeline("org.example.single", input=model)


# -- declaration ---------------------------------------------------------------------------------


def test_steps_are_recorded_in_order_with_kind_cardinality_and_types() -> None:
    p = payments()
    assert [s.id for s in p.steps] == ["rows", "prepare", "AwaitProvider", "settle", "publish"]
    assert [s.index for s in p.steps] == [0, 1, 2, 3, 4]
    assert [s.kind for s in p.steps] == [
        StepKind.EXPAND,
        StepKind.STEP,
        StepKind.AWAIT,
        StepKind.STEP,
        StepKind.COLLECT,
    ]
    assert [s.cardinality for s in p.steps] == [
        Cardinality.ONE_TO_MANY,
        Cardinality.ONE_TO_ONE,
        Cardinality.ONE_TO_ONE,
        Cardinality.ONE_TO_ONE,
        Cardinality.MANY_TO_ONE,
    ]
    assert p.input_type is File
    assert p.output_type is Report
    assert p.step(0).output_type == list[Row]
    assert p.step(3).input_type == Awaited[Pending, Verdict]
    assert p.step(4).input_type == list[Settled]


def test_steps_between_an_expand_and_a_collect_are_per_item_and_the_await_is_itemized() -> None:
    p = payments()
    assert [s.per_item for s in p.steps] == [False, True, True, True, False]
    assert [s.itemized for s in p.steps] == [False, False, True, False, False]


def test_an_await_step_records_its_policy_and_response_type() -> None:
    spec = payments().step(2)
    assert spec.response_type is Verdict
    assert spec.await_policy is not None
    assert spec.await_policy.transport == "sqs"
    assert spec.await_policy.timeout == timedelta(hours=1)
    assert spec.await_policy.on_timeout == "FAIL"


def test_the_step_id_defaults_to_the_function_name() -> None:
    p = single()

    @p.step()
    def double(r: Row) -> Row:
        return Row(n=r.n * 2)

    assert p.step(0).id == "double"


def test_a_step_whose_input_does_not_match_the_previous_output_is_rejected() -> None:
    p = single()

    @p.step()
    def first(r: Row) -> Pending:
        return Pending(n=r.n)

    with pytest.raises(ContractError, match=r"step 'second'.*takes .*Row but step 'first'"):

        @p.step()
        def second(r: Row) -> Row:
            return r


def test_the_first_step_must_take_the_pipeline_input() -> None:
    with pytest.raises(ContractError, match="the pipeline input produces"):

        @single(File).step()
        def first(r: Row) -> Row:
            return r


def test_a_step_without_annotations_is_rejected() -> None:
    p = single()
    with pytest.raises(ContractError, match="'r' has no type annotation"):

        @p.step()
        def untyped_input(r):  # type: ignore[no-untyped-def]
            return r

    with pytest.raises(ContractError, match="missing return annotation"):

        @p.step()
        def untyped_output(r: Row):  # type: ignore[no-untyped-def]
            return r


def test_inputs_and_outputs_must_be_pydantic_models() -> None:
    with pytest.raises(ContractError, match="input must be a pydantic model"):
        Pipeline("p", input=dict)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="output must be a pydantic model"):

        @single().step()
        def to_dict(r: Row) -> dict[str, int]:
            return {}


def test_a_duplicate_step_id_is_rejected() -> None:
    p = single()

    @p.step(id="same")
    def a(r: Row) -> Row:
        return r

    with pytest.raises(ContractError, match="step 'same': duplicate step id"):

        @p.step(id="same")
        def b(r: Row) -> Row:
            return r


def test_collect_without_an_open_expansion_is_rejected() -> None:
    with pytest.raises(ContractError, match="step 'gather': collect without an open expansion"):

        @single().collect()
        def gather(rows: list[Row]) -> Report:
            return Report(total=len(rows))


def test_a_nested_expansion_is_rejected() -> None:
    p = single(File)

    @p.expand()
    def rows(f: File) -> list[Row]:
        return []

    with pytest.raises(ContractError, match="step 'again': nested expansion"):

        @p.expand()
        def again(r: Row) -> list[Row]:
            return [r]


def test_an_expand_step_must_return_a_list_of_models() -> None:
    with pytest.raises(ContractError, match=r"must return list\[Model\]"):

        @single().expand()
        def not_a_list(r: Row) -> Row:
            return r


def test_collect_must_take_a_list_of_the_current_item_type() -> None:
    p = single(File)

    @p.expand()
    def rows(f: File) -> list[Row]:
        return []

    @p.step()
    def pend(r: Row) -> Pending:
        return Pending(n=r.n)

    with pytest.raises(ContractError, match=r"takes list\[.*Row\] but step 'pend' produces"):

        @p.collect()
        def gather(rows: list[Row]) -> Report:
            return Report(total=0)


def test_the_step_after_an_await_must_take_awaited_request_and_response() -> None:
    p = single()

    @p.await_(response=Verdict)
    def ask(r: Row) -> Pending:
        return Pending(n=r.n)

    with pytest.raises(ContractError, match=r"Awaited\[.*Pending,.*Verdict\]"):

        @p.step()
        def after(v: Verdict) -> Report:
            return Report(total=0)


def test_the_step_after_an_exclusive_await_takes_awaited_once() -> None:
    p = single()

    @p.await_(response=Verdict, idempotency_fields=("n",), exclusive=timedelta(days=1))
    def ask(r: Row) -> Pending:
        return Pending(n=r.n)

    with pytest.raises(ContractError, match=r"AwaitedOnce\[.*Pending,.*Verdict\]"):

        @p.step()
        def plain(answer: Awaited[Pending, Verdict]) -> Report:
            return Report(total=0)

    @p.step()
    def after(answer: AwaitedOnce[Pending, Verdict]) -> Report:
        return Report(total=0 if answer.duplicate_of else 1)

    policy = p.step(0).await_policy
    assert policy is not None and policy.exclusive == timedelta(days=1)


def test_an_exclusive_await_needs_the_fields_that_key_it() -> None:
    with pytest.raises(ContractError, match="exclusive await needs idempotency_fields"):

        @single().await_(response=Verdict, exclusive=timedelta(days=1))
        def ask(r: Row) -> Pending:
            return Pending(n=r.n)


def test_an_await_response_must_be_a_model_and_its_idempotency_fields_must_exist() -> None:
    with pytest.raises(ContractError, match="response must be a pydantic model"):

        @single().await_(response=int)  # type: ignore[arg-type]
        def ask(r: Row) -> Row:
            return r

    with pytest.raises(ContractError, match="idempotency fields"):

        @single().await_(response=Verdict, idempotency_fields=("nope",))
        def ask_again(r: Row) -> Row:
            return r


def test_a_second_parameter_that_is_not_a_context_is_rejected() -> None:
    with pytest.raises(ContractError, match="StepContext or be named ctx"):

        @single().step()
        def two(r: Row, other: int) -> Row:
            return r


def test_an_expansion_left_open_makes_the_pipeline_incomplete() -> None:
    p = single(File)

    @p.expand()
    def rows(f: File) -> list[Row]:
        return []

    with pytest.raises(ContractError, match="expansion of step 'rows' is never collected"):
        p.check()
    with pytest.raises(ContractError, match="has no steps"):
        single().check()


def test_type_ids_spell_out_module_qualname_and_arguments() -> None:
    assert type_id(Row) == "tests.unit.test_pipeline.Row"
    assert type_id(list[Row]) == "list[tests.unit.test_pipeline.Row]"
    assert type_id(Awaited[Pending, Verdict]) == (
        "tpf.pipeline.Awaited[tests.unit.test_pipeline.Pending,tests.unit.test_pipeline.Verdict]"
    )


def test_a_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(base_delay=timedelta(seconds=-1))


# -- boundaries and retry ------------------------------------------------------------------------


def test_boundaries_stop_after_each_await_and_checkpoint_and_at_the_end() -> None:
    # AwaitProvider is index 2 and settle (checkpoint) index 3: stop before 3, before 4, before 5.
    assert payments().boundaries() == (3, 4, 5)


@pytest.mark.parametrize(("start", "stop"), [(0, 3), (1, 3), (2, 3), (3, 4), (4, 5)])
def test_next_boundary_is_the_stop_index_of_a_transition_starting_there(
    start: int, stop: int
) -> None:
    assert payments().next_boundary(start) == stop


def test_a_pipeline_without_awaits_or_checkpoints_is_one_transition() -> None:
    p = single()

    @p.step()
    def a(r: Row) -> Row:
        return r

    @p.step()
    def b(r: Row) -> Row:
        return r

    assert p.boundaries() == (2,)
    assert p.next_boundary(0) == 2


@pytest.mark.parametrize("start", [-1, 5])
def test_next_boundary_outside_the_pipeline_raises(start: int) -> None:
    with pytest.raises(IndexError):
        payments().next_boundary(start)


def test_retry_for_gives_the_step_policy_or_the_pipeline_default() -> None:
    p = payments()
    assert p.retry_for(1).max_attempts == 7
    assert p.retry_for(0) == p.retry == RetryPolicy(max_attempts=4)
    assert p.retry_for(2).max_attempts == 4


# -- calling steps -------------------------------------------------------------------------------


def context(step_index: int = 0, attempt: int = 1) -> StepContext:
    return StepContext(
        tenant_id="t",
        execution_id="e",
        pipeline_id="org.example.single",
        step_id="s",
        step_index=step_index,
        attempt=attempt,
        transition_key=f"e:{step_index}:{attempt}",
        idempotency_key=idempotency_key("t", "e", step_index),
        release_version="1",
    )


async def test_call_step_runs_sync_and_async_steps_with_and_without_context() -> None:
    p = single()

    @p.step()
    def plain(r: Row) -> Row:
        return Row(n=r.n + 1)

    @p.step()
    async def coroutine(r: Row) -> Row:
        return Row(n=r.n + 10)

    @p.step()
    def sync_with_ctx(r: Row, ctx: StepContext) -> Row:
        return Row(n=r.n + ctx.attempt * 100)

    @p.step()
    async def async_with_annotated_context(r: Row, context: StepContext) -> Row:
        return Row(n=r.n + context.step_index * 1000)

    value = Row(n=0)
    for spec in p.steps:
        value = await call_step(spec, value, context(step_index=spec.index, attempt=2))
    assert value == Row(n=1 + 10 + 200 + 3000)
    assert [s.wants_context for s in p.steps] == [False, False, True, True]


def test_the_idempotency_key_is_stable_across_attempts_and_redeliveries() -> None:
    first, retry = context(step_index=2, attempt=1), context(step_index=2, attempt=3)
    assert first.transition_key != retry.transition_key
    assert first.idempotency_key == retry.idempotency_key == "t:e:2"


def test_the_idempotency_key_changes_with_the_redrive_generation_and_the_item() -> None:
    assert idempotency_key("t", "e", 2, generation=0) == "t:e:2"
    assert idempotency_key("t", "e", 2, generation=1) == "t:e:2:g1"
    assert idempotency_key("t", "e", 2, item=7) == "t:e:2:i7"
    assert idempotency_key("t", "e", 2, generation=2, item=0) == "t:e:2:g2:i0"
