"""List prices, and what a measured request profile costs at them.

One table, dated: when AWS changes a price, change it here and the date with it. DynamoDB
reports transactional writes at double capacity already, so capacity units are priced as
reported; a failed conditional write reports none and is priced as one WRU (the ledger's rule).
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


LIST_PRICES = PriceTable(
    as_of="2026-01",
    region="us-east-1",
    sqs_per_million_requests=0.40,
    dynamodb_per_million_wru=0.625,
    dynamodb_per_million_rru=0.125,
    s3_put_per_thousand=0.005,
    s3_get_per_thousand=0.0004,
    step_functions_standard_per_million_transitions=25.0,
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
