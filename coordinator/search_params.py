"""The query string of ``GET .../tenants/{t}/executions``, read into an ``ExecutionQuery``.

Everything here is untrusted text: each parameter is bounded before it is parsed, and whatever
is wrong is ``InvalidInput`` whose pointer names the parameter (``/since``), so the route answers
400, never 422 or 500. ``limit`` is clamped to 1..200 (50 when absent) rather than refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from coordinator.store.search import (
    DEFAULT_LIMIT,
    SUPPORTED,
    ExecutionQuery,
    UnsupportedSearch,
    clamp_limit,
    statuses_of,
)
from tpf.errors import InvalidInput
from tpf.records import (
    MAX_EPOCH_MS,
    MAX_ERROR_CODE,
    MAX_PIPELINE,
    MAX_TENANT,
    check_identifier,
)

PARAMETERS = ("status", "pipelineId", "errorCode", "since", "until", "limit", "cursor")
_SINGLE = frozenset(PARAMETERS) - {"status"}
_MAX_VALUE_CHARS = 600
_EPOCH_MS = re.compile(r"^[0-9]{1,14}$")
_INTEGER = re.compile(r"^-?[0-9]+$")


def search_request(
    tenant_id: str, params: Iterable[tuple[str, str]]
) -> tuple[ExecutionQuery, str | None]:
    """The query and the cursor a request's ``params`` (name, value pairs) ask for."""
    check_identifier(tenant_id, what="tenant id", pointer="", limit=MAX_TENANT)
    values: dict[str, list[str]] = {}
    for name, value in params:
        if name not in PARAMETERS:
            raise UnsupportedSearch(
                f"unknown parameter {name[:40]!r}; parameters: {', '.join(PARAMETERS)}; "
                + SUPPORTED,
                pointer=f"/{name[:40]}",
            )
        if len(value) > _MAX_VALUE_CHARS:
            raise InvalidInput(f"{name} is longer than {_MAX_VALUE_CHARS}", pointer=f"/{name}")
        values.setdefault(name, []).append(value)
    single = {}
    for name in _SINGLE & set(values):
        if len(values[name]) > 1:
            raise InvalidInput(f"{name} is given more than once", pointer=f"/{name}")
        single[name] = values[name][0]
    pipeline_id = single.get("pipelineId") or None
    if pipeline_id is not None:
        check_identifier(pipeline_id, what="pipelineId", pointer="/pipelineId", limit=MAX_PIPELINE)
    error_code = single.get("errorCode") or None
    if error_code is not None:
        check_identifier(error_code, what="errorCode", pointer="/errorCode", limit=MAX_ERROR_CODE)
    query = ExecutionQuery(
        tenant_id,
        statuses_of(v for v in values.get("status", []) if v),
        pipeline_id=pipeline_id,
        error_code=error_code,
        since_ms=instant(single.get("since"), "since", default=0),
        until_ms=instant(single.get("until"), "until", default=MAX_EPOCH_MS),
        limit=limit_of(single.get("limit")),
    )
    return query, single.get("cursor") or None


def instant(text: str | None, name: str, *, default: int) -> int:
    """Epoch milliseconds, from epoch milliseconds or an ISO-8601 time (UTC unless it says)."""
    if not text:
        return default
    if _EPOCH_MS.match(text):
        value = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{name} is neither epoch milliseconds nor an ISO-8601 time "
                "(such as 2026-12-03T09:30:00Z)",
                pointer=f"/{name}",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = int(moment.timestamp() * 1000)
    if not 0 <= value <= MAX_EPOCH_MS:
        raise InvalidInput(f"{name} is out of range (1970 to 2286)", pointer=f"/{name}")
    return value


def limit_of(text: str | None) -> int:
    if not text:
        return DEFAULT_LIMIT
    text = text.strip()
    if not _INTEGER.match(text):
        raise InvalidInput("limit is not a whole number", pointer="/limit")
    # Past a few digits the value only says "as many as allowed"; int() of it is not needed.
    if len(text.lstrip("-")) > 6:
        return clamp_limit(-1 if text.startswith("-") else 10**6)
    return clamp_limit(int(text))
