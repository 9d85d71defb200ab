"""List prices, and what a measured request profile costs at them.

One table, dated: when AWS changes a price, change it here and the date with it. DynamoDB
reports transactional writes at double capacity already, so capacity units are priced as
reported; a failed conditional write reports none and is priced as one WRU (the ledger's rule).

Every figure is us-east-1 on demand, with no free tier. Each names its page; a figure read from
a transcription of that page rather than the page itself is listed in ``unverified``, and every
output that prints the table prints that list with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

MILLION = 1_000_000


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    region: str
    sqs_per_million_requests: float
    dynamodb_per_million_wru: float
    dynamodb_per_million_rru: float
    s3_put_per_thousand: float
    s3_get_per_thousand: float
    step_functions_standard_per_million_transitions: float
    step_functions_express_per_million_requests: float
    step_functions_express_per_gb_hour: float
    lambda_per_million_requests: float
    lambda_durable_per_million_operations: float
    lambda_durable_per_gb_written: float
    lambda_durable_per_gb_month_retained: float
    fargate_per_vcpu_hour: float
    fargate_per_gb_hour: float
    load_balancer_per_hour: float
    secrets_manager_per_secret_month: float
    unverified: tuple[str, ...] = ()
    """Figures read from a transcription of their page, not from the page itself."""


LIST_PRICES = PriceTable(
    as_of="2026-12",
    region="us-east-1",
    # aws.amazon.com/sqs/pricing (standard queue, after the first million)
    sqs_per_million_requests=0.40,
    # aws.amazon.com/dynamodb/pricing/on-demand
    dynamodb_per_million_wru=0.625,
    dynamodb_per_million_rru=0.125,
    # aws.amazon.com/s3/pricing (S3 Standard)
    s3_put_per_thousand=0.005,
    s3_get_per_thousand=0.0004,
    # aws.amazon.com/step-functions/pricing: Standard per state transition; Express per request
    # and per GB-hour of duration (the first 1,000 GB-hours of a month: the dearest tier), the
    # duration rounded up to 100 ms and the memory billed in 64 MB chunks.
    step_functions_standard_per_million_transitions=25.0,
    step_functions_express_per_million_requests=1.00,
    step_functions_express_per_gb_hour=0.06,
    # aws.amazon.com/lambda/pricing: requests, and durable functions' durable operations
    # (steps, waits, callbacks), data they write and data retained.
    lambda_per_million_requests=0.20,
    lambda_durable_per_million_operations=8.00,
    lambda_durable_per_gb_written=0.25,
    lambda_durable_per_gb_month_retained=0.15,
    # aws.amazon.com/fargate/pricing (Linux/x86)
    fargate_per_vcpu_hour=0.04048,
    fargate_per_gb_hour=0.004445,
    # aws.amazon.com/elasticloadbalancing/pricing (Application Load Balancer hour; an idle one
    # uses next to no LCUs)
    load_balancer_per_hour=0.0225,
    # aws.amazon.com/secrets-manager/pricing
    secrets_manager_per_secret_month=0.40,
    # The Lambda page renders its prices in the browser: the durable figures here are from two
    # transcriptions of it that agree, and the request price is its long-standing list price.
    # The Fargate, load balancer and Secrets Manager figures are from published summaries of
    # their pages that agree with each other.
    unverified=(
        "lambda_per_million_requests",
        "lambda_durable_per_million_operations",
        "lambda_durable_per_gb_written",
        "lambda_durable_per_gb_month_retained",
        "fargate_per_vcpu_hour",
        "fargate_per_gb_hour",
        "load_balancer_per_hour",
        "secrets_manager_per_secret_month",
    ),
)

# S3 bills PUT, COPY, POST and LIST requests at the PUT rate, and GET and the rest at the GET rate.
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "ListObjects",
        "ListObjectsV2",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    }
)
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})


def s3_requests(operations: Mapping[str, float]) -> tuple[float, float]:
    """(PUT-class, GET-class) requests among S3 operation counts."""
    put = sum(n for op, n in operations.items() if op in S3_PUT_CLASS)
    get = sum(n for op, n in operations.items() if op not in S3_PUT_CLASS | S3_FREE)
    return put, get


def usd_per_million(
    *,
    sqs_billed_requests: float,
    wru: float,
    rru: float,
    failed_conditional_writes: float,
    s3_put: float,
    s3_get: float,
    prices: PriceTable = LIST_PRICES,
) -> dict[str, float]:
    """Dollars per million executions, given per-execution figures."""
    sqs = sqs_billed_requests * prices.sqs_per_million_requests
    dynamodb = (wru + failed_conditional_writes) * prices.dynamodb_per_million_wru
    dynamodb += rru * prices.dynamodb_per_million_rru
    s3 = (s3_put * prices.s3_put_per_thousand + s3_get * prices.s3_get_per_thousand) * 1000
    return {
        "sqs": round(sqs, 4),
        "dynamodb": round(dynamodb, 4),
        "s3": round(s3, 4),
        "total": round(sqs + dynamodb + s3, 4),
    }


def step_functions_standard(
    *, states_entered: int, inbox_writes: int = 0, prices: PriceTable = LIST_PRICES
) -> dict[str, Any]:
    """The same pipeline as a Standard state machine: every state entered is a billed
    transition; a human inbox keeping task tokens in DynamoDB adds a write per token."""
    transitions = states_entered * prices.step_functions_standard_per_million_transitions
    inbox = inbox_writes * prices.dynamodb_per_million_wru
    return {
        "state_transitions": states_entered,
        "inbox_wru": inbox_writes,
        "usd_per_million": round(transitions + inbox, 4),
    }


def price_table_json(prices: PriceTable = LIST_PRICES) -> dict[str, Any]:
    return asdict(prices)
