"""A payment id is paid once per tenant: the first execution that sends it owns it, a later row
with it (in any file) is ``DUPLICATE`` and is not sent, and an id never sent stays free."""

from __future__ import annotations

import pytest

from coordinator.testing import InMemoryCoordinator
from examples.csv_payments.files import InMemoryFiles
from examples.csv_payments.pipeline import csv_payments
from tests.unit.csv_harness import Provider, coordinator, memory_files, output, rows, run, upload
from tpf.clock import now_ms
from tpf.records import Status

files = pytest.fixture(memory_files, name="files")


async def statuses(
    c: InMemoryCoordinator, files: InMemoryFiles, execution_id: str
) -> dict[str, list[str]]:
    """Payment id → its output line (status, reference, fee, message)."""
    report = (await c.service.result("acme", execution_id)).result
    return {line[0]: line[1:] for line in output(files, report)[1:]}


async def test_a_payment_sent_by_one_file_is_a_duplicate_in_the_next(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    provider = Provider(c)
    first = await upload(c, files, "in/monday.csv", rows(2))
    await run(c, provider)
    # Re-sent with one more row, under another name.
    second = await upload(c, files, "in/monday (copy).csv", rows(3))
    await run(c, provider)

    assert (await c.service.status("acme", second)).status is Status.SUCCEEDED
    lines = await statuses(c, files, second)
    assert lines["p3"][0] == "APPROVED"
    for payment_id in ("p1", "p2"):
        status, reference, fee, message = lines[payment_id]
        assert (status, reference, fee) == ("DUPLICATE", "", "")
        assert message == f"already sent by execution {first} (APPROVED)"
    report = (await c.service.result("acme", second)).result
    assert (report["approved"], report["duplicate"]) == (1, 2)
    # One request per payment id, keyed by tenant and id.
    keys = sorted(r.idempotency_key for r in provider.requests)
    assert keys == ["acme:p1", "acme:p2", "acme:p3"]


async def test_a_duplicate_of_a_payment_still_out_says_so(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    provider = Provider(c)
    first = await upload(c, files, "a.csv", rows(1))
    await run(c, provider, keep=lambda request: False)  # out, not answered yet
    second = await upload(c, files, "b.csv", rows(1))
    await run(c, provider)

    assert (await c.service.status("acme", second)).status is Status.SUCCEEDED
    lines = await statuses(c, files, second)
    assert lines["p1"] == [
        "DUPLICATE",
        "",
        "",
        f"already sent by execution {first} (awaiting the provider's answer)",
    ]
    assert (await c.service.status("acme", first)).status is Status.WAITING_EXTERNAL
    assert len(provider.requests) == 1


async def test_a_payment_never_sent_stays_free(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    provider = Provider(c)
    abandoned = await upload(c, files, "first.csv", rows(1))
    await c.operations.cancel("acme", abandoned, actor="ops", now_ms=now_ms(), reason="wrong")
    second = await upload(c, files, "second.csv", rows(1))
    await run(c, provider)

    assert (await statuses(c, files, second))["p1"][0] == "APPROVED"
    assert [r.execution_id for r in provider.requests] == [second]


async def test_other_tenants_own_their_own_ids(files: InMemoryFiles) -> None:
    c = coordinator()
    await c.register(csv_payments)
    provider = Provider(c)
    await upload(c, files, "a.csv", rows(1))
    await upload(c, files, "a.csv", rows(1), tenant_id="globex")
    await run(c, provider)
    assert sorted(r.idempotency_key for r in provider.requests) == ["acme:p1", "globex:p1"]
