"""A measured figure beside the figure it is held to."""

from __future__ import annotations

import math
from typing import Any


def at_most(value: float, target: float) -> dict[str, Any]:
    return {
        "value": _rounded(value),
        "target": target,
        "met": math.isfinite(value) and value <= target,
    }


def at_least(value: float, target: float) -> dict[str, Any]:
    return {
        "value": _rounded(value),
        "target": target,
        "met": math.isfinite(value) and value >= target,
    }


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


def _rounded(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None
