"""``org.pipelineframework.csvpayments``: one uploaded CSV file, one provider call per payment.

read the file (parse and validate; rejected rows go to a manifest) → expand to payments →
await the payment provider per payment (``ProcessAwaitPaymentProviderService``, over the SQS
request and completion queues) → write the output file, one line per input row, to the outbox.

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

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from examples.csv_payments.files import files
from examples.csv_payments.records import (
    ParsedFile,
    PaymentRecord,
    ProviderAnswer,
    RejectedLine,
    output_lines,
    parse_csv,
    render_csv,
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


class PaymentBatch(_Model):
    source: CsvObject
    payments: list[PaymentRecord]


class Manifest(_Model):
    """What the last step needs besides the answers: where the file came from, its bad rows."""

    source: CsvObject
    rejected: list[RejectedLine]


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


@csv_payments.step(id="ReadPaymentsFile")
async def read_payments(source: CsvObject, ctx: StepContext) -> PaymentBatch:
    store = files()
    parsed = parse_csv(await store.read(source.bucket, source.key, source.version_id, source.etag))
    manifest = Manifest(source=source, rejected=parsed.rejected)
    await store.write(
        store.bucket("payloads"),
        manifest_key(ctx.tenant_id, ctx.execution_id),
        manifest.model_dump_json().encode(),
        "application/json",
    )
    return PaymentBatch(source=source, payments=parsed.payments)


@csv_payments.expand(id="ExpandPayments")
def expand_payments(batch: PaymentBatch) -> list[PaymentRecord]:
    return batch.payments


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
    answers: list[AwaitedOnce[PaymentRecord, ProviderAnswer]], ctx: StepContext
) -> PaymentsReport:
    store = files()
    manifest = Manifest.model_validate_json(
        await store.read(
            store.bucket("payloads"), manifest_key(ctx.tenant_id, ctx.execution_id), None
        )
    )
    payments = [a.request for a in answers]
    parsed = ParsedFile(
        payments=payments,
        rejected=manifest.rejected,
        total_lines=len(payments) + len(manifest.rejected),
    )
    lines = output_lines(
        parsed,
        {a.request.payment_id: a.response for a in answers if a.response is not None},
        {a.request.payment_id: a.duplicate_of for a in answers if a.duplicate_of is not None},
    )
    bucket, key = store.bucket("outbox"), output_key(manifest.source, ctx.execution_id)
    await store.write(bucket, key, render_csv(lines), "text/csv; charset=utf-8")
    statuses = [line.status for line in lines]
    return PaymentsReport(
        source=manifest.source,
        output_bucket=bucket,
        output_key=key,
        lines=len(lines),
        approved=statuses.count("APPROVED"),
        rejected=statuses.count("REJECTED"),
        invalid=statuses.count("INVALID"),
        no_answer=statuses.count("NO_ANSWER"),
        error=statuses.count("ERROR"),
        duplicate=statuses.count("DUPLICATE"),
    )


def manifest_key(tenant_id: str, execution_id: str) -> str:
    return f"csv-payments/{tenant_id}/{execution_id}/manifest.json"


def output_key(source: CsvObject, execution_id: str) -> str:
    """``results/<execution>/<file name>``: one output per execution, named like its input."""
    return f"results/{execution_id}/{source.key.rsplit('/', 1)[-1]}"
