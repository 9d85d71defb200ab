"""``GET /tpf/control-plane/tenants/{t}/executions``: the search route over the in-memory store,
and the hostile-input tier for its query string and cursor."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.api import create_app
from coordinator.search_params import PARAMETERS
from coordinator.store import ExecutionStore
from coordinator.testing import InMemoryCoordinator
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, Status, new_execution

pytestmark = pytest.mark.timeout(120)

CONTROL, ADMIN = "control-token-0123456789", "admin-token-0123456789"
ROUTE = "/tpf/control-plane/tenants/acme/executions"
NOW = 1_800_000_000_000  # 2027-01-15T08:00:00Z


def submitted(created_ms: int, pipeline: str = "org.example.orders") -> ExecutionRecord:
    return new_execution(
        tenant_id="acme",
        pipeline_id=pipeline,
        idempotency_key=uuid.uuid4().hex,
        contract_version="sha256:" + "ab" * 32,
        release_version="1.0.0",
        input=PayloadRef.of_inline("{}"),
        now_ms=created_ms,
        dispatch_deadline_ms=created_ms + 3_000,
    )


async def dead(store: ExecutionStore, record: ExecutionRecord, code: str) -> ExecutionRecord:
    return await store.fail(
        record,
        transition_key=record.transition_key,
        status=Status.DLQ,
        error_code=code,
        message="out of attempts",
        now_ms=record.created_at_ms + 1,
    )


@pytest.fixture
async def searched() -> AsyncIterator[tuple[httpx.AsyncClient, list[ExecutionRecord]]]:
    """The API over an in-memory coordinator holding five executions of tenant ``acme``, one
    second apart: the oldest two dead-lettered, the newest of another pipeline."""
    coordinator = InMemoryCoordinator.create()
    store = coordinator.store
    records = [submitted(NOW + i * 1_000) for i in range(4)]
    records.append(submitted(NOW + 4_000, "org.example.shop"))
    for record in records:
        await store.submit(record, now_ms=record.created_at_ms)
    records[0] = await dead(store, records[0], "TRANSITION_TIMEOUT")
    records[1] = await dead(store, records[1], "INVALID_ORDER")
    app = create_app(coordinator.service, control_plane_token=CONTROL, admin_token=ADMIN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        client.headers["Authorization"] = f"Bearer {CONTROL}"
        yield client, records


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["executionId"] for e in response.json()["executions"]]


async def test_pages_come_newest_first_until_the_cursor_is_null(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
) -> None:
    http, records = searched
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await http.get(ROUTE, params=params)
        seen += ids(response)
        pages += 1
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break
    assert seen == [r.execution_id for r in reversed(records)]
    assert pages == 3
    first = (await http.get(ROUTE, params={"limit": 1})).json()["executions"][0]
    assert (first["status"], first["pipelineId"]) == ("RUNNING", "org.example.shop")


async def test_filters_narrow_the_search(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
) -> None:
    http, records = searched
    oldest, older = records[0].execution_id, records[1].execution_id
    assert ids(await http.get(ROUTE, params={"status": "DLQ"})) == [older, oldest]
    assert ids(await http.get(ROUTE, params={"errorCode": "INVALID_ORDER"})) == [older]
    assert ids(await http.get(ROUTE, params=[("status", "FAILED"), ("status", "dlq")])) == [
        older,
        oldest,
    ]
    assert ids(await http.get(ROUTE, params={"status": "RUNNING,SUCCEEDED"})) == [
        r.execution_id for r in reversed(records[2:])
    ]
    shop = await http.get(ROUTE, params={"pipelineId": "org.example.shop"})
    assert ids(shop) == [records[4].execution_id]
    window = {"since": "2027-01-15T08:00:01Z", "until": str(NOW + 3_000)}
    assert ids(await http.get(ROUTE, params=window)) == [
        records[2].execution_id,
        records[1].execution_id,
    ]
    naive_utc = {"since": "2027-01-15T08:00:04"}
    assert ids(await http.get(ROUTE, params=naive_utc)) == [records[4].execution_id]
    other = "/tpf/control-plane/tenants/globex/executions"
    assert ids(await http.get(other)) == []


async def test_the_limit_is_clamped_rather_than_refused(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
) -> None:
    http, _ = searched
    for asked, used in (("0", 1), ("-7", 1), ("3", 3), ("100000", 200), ("9" * 50, 200), ("", 50)):
        response = await http.get(ROUTE, params={"limit": asked})
        assert response.status_code == 200, response.text
        assert response.json()["limit"] == used
    refused = await http.get(ROUTE, params={"limit": "ten"})
    assert refused.status_code == 400
    assert refused.json()["pointer"] == "/limit"


async def test_an_unsupported_combination_is_a_400_that_lists_the_supported_ones(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
) -> None:
    http, _ = searched
    for params in (
        {"status": "RUNNING", "errorCode": "BOOM"},
        {"pipeline": "org.example.orders"},  # not a parameter: pipelineId is
    ):
        response = await http.get(ROUTE, params=params)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["errorCode"] == "UNSUPPORTED_SEARCH"
        assert "supported filters: none (every execution)" in body["message"]


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"status": "DONE"}, "/status"),
        ({"since": "yesterday"}, "/since"),
        ({"since": str(NOW), "until": str(NOW)}, "/since"),
        ({"until": "99999999999999"}, "/until"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "/cursor"),
        ({"pipelineId": "a b"}, "/pipelineId"),
        ({"errorCode": "x" * 49}, "/errorCode"),
    ],
)
async def test_a_wrong_value_is_a_400_naming_its_parameter(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
    params: dict[str, str],
    pointer: str,
) -> None:
    http, _ = searched
    response = await http.get(ROUTE, params=params)
    assert response.status_code == 400, response.text
    assert (response.json()["errorCode"], response.json()["pointer"]) == ("INVALID_INPUT", pointer)


async def test_searching_takes_the_control_plane_token(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
) -> None:
    http, _ = searched
    for token in ("", ADMIN):
        response = await http.get(ROUTE, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


# -- hostile input -------------------------------------------------------------------------------


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


POSITIONS = st.one_of(
    st.none(),
    st.tuples(
        st.one_of(st.integers(-(10**20), 10**20), st.floats(), st.booleans(), st.text(max_size=5)),
        st.one_of(st.text(max_size=80), st.integers(), st.none()),
    ).map(list),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=4),
)
CURSOR_DOCUMENTS = st.fixed_dictionaries(
    {
        "q": st.one_of(st.text(max_size=20), st.integers(), st.none()),
        "at": st.one_of(
            st.dictionaries(st.sampled_from(["E", "F", "X", ""]), POSITIONS, max_size=3),
            st.text(max_size=10),
            st.lists(POSITIONS, max_size=3),
        ),
    }
)
CURSORS = st.one_of(
    st.text(max_size=120),
    st.binary(max_size=120).map(base64url),
    CURSOR_DOCUMENTS.map(lambda doc: base64url(json.dumps(doc).encode())),
    st.just("A" * 5_000),
)
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            *("DLQ", "FAILED,RUNNING", "-1", "0", "1e3", "9" * 400, "NaN", "\x00", "\ud800"),
            *(
                "2026-12-03T09:30:00+14:00",
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-23:59",
            ),
        ]
    ),
)
QUERIES = st.lists(
    st.tuples(st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=12)), VALUES),
    max_size=6,
)


def sendable(text: str) -> str:
    """``text`` as a client can send it: a lone surrogate has no UTF-8 form."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@settings(max_examples=200, suppress_health_check=list(HealthCheck))
@given(QUERIES, st.one_of(st.none(), CURSORS))
async def test_no_query_string_or_cursor_gets_a_5xx_and_every_refusal_says_why(
    searched: tuple[httpx.AsyncClient, list[ExecutionRecord]],
    query: list[tuple[str, str]],
    cursor: str | None,
) -> None:
    http, _ = searched
    params = [(sendable(k), sendable(v)) for k, v in query]
    if cursor is not None:
        params.append(("cursor", cursor))
    response = await http.get(ROUTE, params=params)
    assert response.status_code in (200, 400), (params, response.text[:300])
    body = response.json()
    if response.status_code == 400:
        assert body["errorCode"] in ("INVALID_INPUT", "UNSUPPORTED_SEARCH")
        assert body["message"]
    else:
        assert len(body["executions"]) <= body["limit"] <= 200
