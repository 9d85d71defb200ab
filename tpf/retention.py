"""How long an execution's items are kept once written: records, history, payloads, outputs."""

from __future__ import annotations

from datetime import timedelta

EXECUTION_TTL = timedelta(days=30)
