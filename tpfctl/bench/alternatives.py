"""The same pipeline on AWS's own orchestrators, per execution, and the volume at which tpf's
fixed monthly bill pays for itself against each.

Orchestration only, on every side: the steps' own compute is the same wherever they run, so it
is left out of tpf's figure and of every alternative's. Step Functions Standard is priced in
``prices.step_functions_standard``; Express and Lambda durable functions here.

The break-even is plain arithmetic: with a fixed bill F a month and a cost m per execution
against an alternative's a (and no fixed bill), tpf is cheaper above F / (a - m) executions a
month, and never when a <= m: no volume pays back a fixed bill when every execution costs more.
"""

from __future__ import annotations

import math
from typing import Any

from tpfctl.bench.prices import LIST_PRICES, MILLION, PriceTable

EXPRESS_LIMIT_S = 300.0
"""Express runs an execution for at most five minutes."""
EXPRESS_MEMORY_MB = 64
"""Billed in 64 MB chunks; a small definition and small payloads fit in one (about 50 MB is
the base)."""
EXPRESS_ROUNDING_S = 0.1

DURABLE_KB_PER_OPERATION = 1.0
"""Each durable operation checkpoints its result; the reference pipelines' results are small."""
DURABLE_RETENTION_DAYS = 14
"""Lambda's default retention of a closed durable execution's history."""
CALLBACK_OPERATIONS = 2
"""A wait for a callback: one operation to create the callback, one for its answer."""


def step_functions_express(
    *, seconds: float, awaits: int, prices: PriceTable = LIST_PRICES
) -> dict[str, Any]:
    """An Express workflow lasting ``seconds`` (the measured time of one execution alone):
    a request, and the duration rounded up to 100 ms at 64 MB. None fits with an await."""
    if awaits:
        return {
            "fits": False,
            "why": "it waits for an answer (a human or a provider) with no bound: Express runs "
            "at most 5 minutes and has no .waitForTaskToken",
        }
    if seconds > EXPRESS_LIMIT_S:
        return {"fits": False, "why": f"one execution takes {seconds:g} s; Express stops at 300 s"}
    billed_s = math.ceil(round(seconds / EXPRESS_ROUNDING_S, 6)) * EXPRESS_ROUNDING_S
    gb_seconds = billed_s * EXPRESS_MEMORY_MB / 1024
    usd = prices.step_functions_express_per_million_requests / MILLION
    usd += gb_seconds * prices.step_functions_express_per_gb_hour / 3600
    return {
        "fits": True,
        "billed_seconds": round(billed_s, 1),
        "billed_memory_mb": EXPRESS_MEMORY_MB,
        "usd_per_million": round(usd * MILLION, 4),
    }


def lambda_durable(*, steps: int, awaits: int, prices: PriceTable = LIST_PRICES) -> dict[str, Any]:
    """A durable function whose steps are durable steps and whose awaits are waits for a
    callback; it is invoked once to start and once more to replay after each callback."""
    operations = steps + CALLBACK_OPERATIONS * awaits
    invocations = 1 + awaits
    gb_written = operations * DURABLE_KB_PER_OPERATION / 1024**2
    gb_months = gb_written * DURABLE_RETENTION_DAYS / 30
    usd = operations * prices.lambda_durable_per_million_operations / MILLION
    usd += gb_written * prices.lambda_durable_per_gb_written
    usd += gb_months * prices.lambda_durable_per_gb_month_retained
    usd += invocations * prices.lambda_per_million_requests / MILLION
    return {
        "durable_operations": operations,
        "lambda_invocations": invocations,
        "kb_written": operations * DURABLE_KB_PER_OPERATION,
        "retention_days": DURABLE_RETENTION_DAYS,
        "usd_per_million": round(usd * MILLION, 4),
    }


def break_even(
    *, fixed_monthly_usd: float, tpf_usd_per_million: float, other_usd_per_million: float
) -> dict[str, Any]:
    """Executions a month above which tpf costs less than the alternative, or why never."""
    margin = other_usd_per_million - tpf_usd_per_million
    if margin <= 0:
        return {
            "tpf_cheaper_above_executions_per_month": None,
            "never": f"an execution costs ${tpf_usd_per_million:g} per million on tpf and "
            f"${other_usd_per_million:g} here: tpf is not the cheaper choice at any volume",
        }
    return {
        "tpf_cheaper_above_executions_per_month": math.ceil(fixed_monthly_usd * MILLION / margin),
    }
