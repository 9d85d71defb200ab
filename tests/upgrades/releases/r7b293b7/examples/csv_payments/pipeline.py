"""``org.pipelineframework.csvpayments``: one uploaded CSV file, one provider call per payment.

read the file and expand it to payments (parse and validate a row at a time; rejected rows go
beside a manifest) → await the payment provider per payment
(``ProcessAwaitPaymentProviderService``, over the SQS request and completion queues) → write the
output file, one line per input row, to the outbox. Payments flow as streams and are stored in
pages (``tpf.pages``), so no process holds a whole file's payments (``streams``).

A payment id is paid once per tenant: the await is exclusive on ``paymentId``, so the first
execution that sends an id to the provider owns it for ``TPF_CSV_PAYMENT_OWNERSHIP_DAYS`` (400),
and a later row with that id, in any file, is reported ``DUPLICATE`` without being sent. The
provider's idempotency key is ``<tenant>:<paymentId>``. To pay the same thing again on purpose,
give it a new id.

The coordinator starts an execution for each object uploaded to the inbox bucket; its input
names the object version, so a retry reads the same bytes. File-level problems fail the
execution with a ``CSV_*`` error code; row-level problems only mark their row ``INVALID``.
Every write is of deterministic content under a deterministic key, so a retried step rewrites
the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from examples.csv_payments.files import files
from examples.csv_payments.records import (
    Limits,
    OutputLine,
    PaymentRecord,
    ProviderAnswer,
    check_size,
    line_of,
    parse_lines,
    rejected_line,
    render_header,
    render_line,
)
from examples.csv_payments.streams import (
    SPOOL,
    RejectedPages,
    in_line_order,
    rejected_rows,
    spooled_size,
    text_lines,
)
from tpf.pipeline import AwaitedOnce, Pipeline, RetryPolicy, StepContext

PIPELINE_ID = "org.pipelineframework.csvpayments"
AWAIT_STEP = "ProcessAwaitPaymentProviderService"
PROVIDER_TIMEOUT = timedelta(hours=1)


class Ownership(BaseSettings):
    """How long a payment id stays with the execution that sent it first
    (``TPF_CSV_PAYMENT_OWNERSHIP_DAYS``); read when the pipeline is built, so it is part of the
    release's contract."""

    model_config = SettingsConfigDict(env_prefix="TPF_CSV_", frozen=True)

    payment_ownership_days: int = Field(default=400, ge=1, le=10 * 366)


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class CsvObject(_Model):
    """The uploaded object, as the ingest channel submits it."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None


class Manifest(_Model):
    """What the last step needs besides the answers: where the file came from, its bad rows."""

    source: CsvObject
    rejected: int
    rejected_pages: list[str]
    """Keys (in the payloads bucket) of the rejected rows, a page each, in file order."""


class PaymentsReport(_Model):
    source: CsvObject
    output_bucket: str
    output_key: str
    lines: int
    approved: int
    rejected: int
    invalid: int
    no_answer: int
    error: int = 0
    """Rows whose provider answer was unusable (a fee or reference out of shape)."""
    duplicate: int = 0
    """Rows whose payment id an earlier execution sent (nothing was sent for them)."""


csv_payments = Pipeline(
    PIPELINE_ID,
    input=CsvObject,
    retry=RetryPolicy(max_attempts=5, base_delay=timedelta(milliseconds=200)),
)


@csv_payments.expand(id="ReadPaymentsFile")
async def read_payments(source: CsvObject, ctx: StepContext) -> AsyncIterator[PaymentRecord]:
    """The file's valid payments in file order; its rejected rows go to the manifest."""
    store, limits = files(), Limits()
    if source.size is not None:
        check_size(source.size, limits)  # before a byte is read
    payloads = store.bucket("payloads")
    prefix = manifest_prefix(ctx.tenant_id, ctx.execution_id)
    rejected = RejectedPages(store, payloads, prefix)
    with contextlib.ExitStack() as stack:
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL))
        await store.read_into(source.bucket, source.key, source.version_id, source.etag, spool)
        spooled_size(spool, limits)
        lines = stack.enter_context(contextlib.closing(text_lines(spool)))
        for count, row in enumerate(parse_lines(lines, limits)):
            if isinstance(row, PaymentRecord):
                yield row
            else:
                await rejected.add(row)
            if count % 1_000 == 0:
                await asyncio.sleep(0)  # a file of rejected rows must not hold the loop
    manifest = Manifest(
        source=source, rejected=rejected.count, rejected_pages=await rejected.finish()
    )
    await store.write(
        payloads, f"{prefix}/manifest.json", manifest.model_dump_json().encode(), "application/json"
    )


@csv_payments.await_(
    id=AWAIT_STEP,
    response=ProviderAnswer,
    transport="sqs",
    timeout=PROVIDER_TIMEOUT,
    idempotency_fields=("paymentId",),
    exclusive=timedelta(days=Ownership().payment_ownership_days),
)
def ask_provider(payment: PaymentRecord) -> PaymentRecord:
    return payment


@csv_payments.collect(id="WritePaymentsOutput")
async def write_output(
    answers: AsyncIterator[AwaitedOnce[PaymentRecord, ProviderAnswer]], ctx: StepContext
) -> PaymentsReport:
    """One output line per input row, in file order, written as the answers stream in."""
    store = files()
    payloads = store.bucket("payloads")
    prefix = manifest_prefix(ctx.tenant_id, ctx.execution_id)
    manifest = Manifest.model_validate_json(
        await store.read(payloads, f"{prefix}/manifest.json", None)
    )

    async def answered() -> AsyncIterator[OutputLine]:
        async for a in answers:
            yield line_of(a.request, a.response, a.duplicate_of)

    async def invalid() -> AsyncIterator[OutputLine]:
        async for bad in rejected_rows(store, payloads, manifest.rejected_pages):
            yield rejected_line(bad)

    counts: Counter[str] = Counter()
    bucket, key = store.bucket("outbox"), output_key(manifest.source, ctx.execution_id)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as out:
        out.write(render_header().encode())
        async for line in in_line_order(answered(), invalid()):
            out.write(render_line(line).encode())
            counts[line.status] += 1
        out.seek(0)
        await store.write_file(bucket, key, out, "text/csv; charset=utf-8")
    return PaymentsReport(
        source=manifest.source,
        output_bucket=bucket,
        output_key=key,
        lines=sum(counts.values()),
        approved=counts["APPROVED"],
        rejected=counts["REJECTED"],
        invalid=counts["INVALID"],
        no_answer=counts["NO_ANSWER"],
        error=counts["ERROR"],
        duplicate=counts["DUPLICATE"],
    )


def manifest_prefix(tenant_id: str, execution_id: str) -> str:
    return f"csv-payments/{tenant_id}/{execution_id}"


def output_key(source: CsvObject, execution_id: str) -> str:
    """``results/<execution>/<file name>``: one output per execution, named like its input."""
    return f"results/{execution_id}/{source.key.rsplit('/', 1)[-1]}"
