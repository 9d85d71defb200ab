"""CSV payments over the in-memory coordinator, with the real worker code and a provider that
answers from the request queue: itemized awaits, admission, batched counting, stalls, bad files."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coordinator.awaits import CompletionRequest
from examples.csv_payments.files import InMemoryFiles
from examples.csv_payments.pipeline import csv_payments
from tests.unit.csv_harness import (
    HEADER,
    Provider,
    coordinator,
    memory_files,
    output,
    rows,
    run,
    upload,
)
from tpf.clock import now_ms
from tpf.records import Status
from tpf.wire import AwaitRequest
from tpfctl.provider_mock import default_decide

files = pytest.fixture(memory_files, name="files")


async def test_every_row_gets_one_output_line_with_the_providers_answer(
    files: InMemoryFiles,
) -> None:
    c = coordinator()
    await c.register(csv_payments)
    text = (
        rows(30)
        + "bad,Bob,-1,EUR\n"
        + "big,Carol,20000,EUR\n"
        + "p3,Dup,1,EUR\n"
        + ",Nobody,1,EUR\n"
        + "blk,Blocked Ltd,5,USD\n"
    )
    execution_id = await upload(c, files, "in/batch 1.csv", text)
    provider = Provider(c)
    await run(c, provider)

    record = await c.service.status("acme", execution_id)
    assert record.status is Status.SUCCEEDED, record
    report = (await c.service.result("acme", execution_id)).result
    assert report["outputKey"] == f"results/{execution_id}/batch 1.csv"
    assert (report["lines"], report["approved"], report["rejected"], report["invalid"]) == (
        35,
        30,
        2,
        3,
    )
    lines = output(files, report)
    assert lines[0] == ["ID", "Status", "ProviderReference", "Fee", "Message"]
    by_id = {line[0]: line for line in lines[1:]}
    assert by_id["p1"][1:2] == ["APPROVED"] and by_id["p1"][3] == "0.32"
    assert by_id["big"][1] == "REJECTED" and by_id["big"][4] == "amount over limit"
    assert by_id["bad"][1] == "INVALID" and "not greater than zero" in by_id["bad"][4]
    assert by_id["blk"][4] == "recipient blocked"
    assert [line[0] for line in lines[1:]][-5:] == ["bad", "big", "p3", "", "blk"]
    # One request per valid payment, never more than the unit's admission out at once.
    assert len(provider.requests) == 32
    # TPF's SqsAwaitDispatchEnvelope fields are there too.
    first = provider.requests[0]
    assert first.input_type is not None and first.input_type.endswith("PaymentRecord")
    assert first.output_type is not None and first.output_type.endswith("ProviderAnswer")
    assert first.transport_metadata["adapter"] == "sqs" and first.resume_token
    assert provider.most_out <= 5
    assert await c.await_table.tenant_in_flight("acme") == 0


async def test_admission_is_shared_by_the_units_of_a_tenant(files: InMemoryFiles) -> None:
    c = coordinator(per_unit=5, per_tenant=7)
    await c.register(csv_payments)
    first = await upload(c, files, "a.csv", rows(20))
    second = await upload(c, files, "b.csv", rows(20, start=100))
    provider = Provider(c)
    await run(c, provider)
    # The second unit waits for room; the sweeper admits it once the first made some.
    for _ in range(40):
        await c.awaits.sweep_once(now_ms() + 10_000)
        await run(c, provider)
    assert provider.most_out <= 7
    for execution_id in (first, second):
        assert (await c.service.status("acme", execution_id)).status is Status.SUCCEEDED
    assert await c.await_table.tenant_in_flight("acme") == 0


async def test_lost_requests_are_sent_again_after_a_stall(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "lossy.csv", rows(8))
    provider = Provider(c)
    seen: set[str] = set()

    def first_time_lost(request: AwaitRequest) -> bool:
        lost = request.item_index in (1, 6) and request.interaction_id not in seen
        seen.add(request.interaction_id)
        return not lost

    await run(c, provider, keep=first_time_lost)
    assert (await c.service.status("acme", execution_id)).status is Status.WAITING_EXTERNAL
    stall = int(c.settings.timings.await_stall.total_seconds() * 1000)
    assert await c.awaits.sweep_once(now_ms() + stall + 1) == 1
    await run(c, provider)
    assert (await c.service.status("acme", execution_id)).status is Status.SUCCEEDED


async def test_duplicate_conflicting_and_unknown_answers_in_one_batch(
    files: InMemoryFiles,
) -> None:
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "dups.csv", rows(2))
    await run(c, Provider(c), keep=lambda request: False)  # the provider loses every request
    record = await c.service.status("acme", execution_id)
    assert record.await_unit_id is not None
    first, second = await c.await_table.interactions("acme", record.await_unit_id)
    answer = {"status": "APPROVED", "providerReference": "r", "fee": "0.01", "message": "ok"}
    other = {**answer, "fee": "9.99"}

    def ask(interaction_id: str, response: object) -> CompletionRequest:
        return CompletionRequest(tenant_id="acme", response=response, interaction_id=interaction_id)

    outcomes = await c.awaits.complete_many(
        [
            ask(first.interaction_id, answer),
            ask(first.interaction_id, answer),
            ask(first.interaction_id, other),
            ask(second.interaction_id, answer),
            ask(f"{record.await_unit_id}-7", answer),
        ]
    )
    assert [
        (type(o).__name__, getattr(o, "duplicate", getattr(o, "code", None))) for o in outcomes
    ] == [
        ("Completed", False),
        ("Completed", True),
        ("Conflict", "INTERACTION_ALREADY_COMPLETED"),
        ("Completed", False),
        ("NotFound", None),
    ]
    await run(c, Provider(c))
    assert (await c.service.status("acme", execution_id)).status is Status.SUCCEEDED


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe not utf-8", "CSV_NOT_UTF8"),
        (b"", "CSV_EMPTY"),
        (b"id,who,amount\n1,a,2\n", "CSV_BAD_HEADER"),
    ],
)
async def test_a_bad_file_fails_with_its_code(files: InMemoryFiles, data: bytes, code: str) -> None:
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "bad.csv", data)
    await run(c, Provider(c))
    record = await c.service.status("acme", execution_id)
    assert (record.status, record.error_code) == (Status.FAILED, code)


@pytest.mark.parametrize(
    ("limit", "code"),
    [("TPF_CSV_MAX_BYTES", "CSV_TOO_LARGE"), ("TPF_CSV_MAX_ROWS", "CSV_TOO_MANY_ROWS")],
)
async def test_a_file_over_its_limits_fails_with_its_code_and_asks_nothing(
    files: InMemoryFiles, monkeypatch: pytest.MonkeyPatch, limit: str, code: str
) -> None:
    monkeypatch.setenv(limit, "40")
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "big.csv", rows(50))
    provider = Provider(c)
    await run(c, provider)
    record = await c.service.status("acme", execution_id)
    assert (record.status, record.error_code) == (Status.FAILED, code)
    assert provider.requests == []


async def test_a_file_of_only_invalid_rows_still_gets_its_output(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "invalid.csv", HEADER + "x,,1,EUR\ny,Bo,1,XXX\n")
    provider = Provider(c)
    await run(c, provider)
    report = (await c.service.result("acme", execution_id)).result
    assert report["invalid"] == 2 and not provider.requests
    assert [line[1] for line in output(files, report)[1:]] == ["INVALID", "INVALID"]


async def test_a_unit_counted_complete_with_an_answer_missing_does_not_resume(
    files: InMemoryFiles,
) -> None:
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "miscounted.csv", rows(3))
    await run(c, Provider(c), keep=lambda request: request.item_index != 2)
    [(key, unit)] = list(c.await_table.units.items())
    assert unit.done == 2
    # As if one answer had been counted twice by a store without isolated transactions.
    c.await_table.units[key] = replace(unit, done=3)

    # The sweeper finds a unit counted complete and goes to resume it.
    assert await c.awaits.sweep_once(unit.look_at_ms + 1) == 1

    assert (await c.service.status("acme", execution_id)).status is Status.WAITING_EXTERNAL


async def test_an_overwritten_upload_is_read_as_it_was_uploaded(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    first = await upload(c, files, "in/same.csv", rows(2))
    second = await upload(c, files, "in/same.csv", rows(3, start=10))  # before the first ran
    provider = Provider(c)
    await run(c, provider)
    ids = {}
    for execution_id in (first, second):
        report = (await c.service.result("acme", execution_id)).result
        ids[execution_id] = [line[0] for line in output(files, report)[1:]]
    assert ids == {first: ["p1", "p2"], second: ["p10", "p11", "p12"]}
    assert sorted(r.request_payload["paymentId"] for r in provider.requests) == sorted(
        ["p1", "p2", "p10", "p11", "p12"]
    )


async def test_an_unusable_provider_answer_is_an_error_row_not_a_stuck_unit(
    files: InMemoryFiles,
) -> None:
    c = coordinator()
    await c.register(csv_payments)
    execution_id = await upload(c, files, "in/fees.csv", rows(2))
    provider = Provider(c)
    provider.decide = lambda payment: {  # type: ignore[method-assign]
        **default_decide(payment),
        **({"fee": "=1+1"} if payment["paymentId"] == "p1" else {}),
    }
    await run(c, provider)
    assert (await c.service.status("acme", execution_id)).status is Status.SUCCEEDED
    report = (await c.service.result("acme", execution_id)).result
    by_id = {line[0]: line for line in output(files, report)[1:]}
    assert by_id["p1"][1] == "ERROR" and "not a non-negative decimal" in by_id["p1"][4]
    assert by_id["p2"][1] == "APPROVED"
    assert report["error"] == 1
