"""Item pages: a long list is stored as pages and read back page by page, in order; a short one
stays a plain list; a damaged index is a clear error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpf.errors import InvalidInput
from tpf.pages import PAGE_ITEMS, PAGES_KEY, PageWriter, is_paged, pages_of
from tpf.payloads import PayloadCorrupt, PayloadStore
from tpf.payloads.memory import InMemoryPayloadBackend


def store() -> PayloadStore:
    return PayloadStore(InMemoryPayloadBackend())


async def written(payloads: PayloadStore, items: list[object]) -> object:
    writer = PageWriter(payloads, "acme", "e-1")
    for item in items:
        await writer.add(item)
    return await writer.finish()


async def read(payloads: PayloadStore, document: object) -> list[list[object]]:
    return [page async for page in pages_of(payloads, "acme", "e-1", document)]


async def test_a_short_list_stays_a_list() -> None:
    payloads = store()
    assert await written(payloads, [{"n": 1}, {"n": 2}]) == [{"n": 1}, {"n": 2}]


async def test_a_long_list_is_paged_and_read_back_in_order() -> None:
    payloads = store()
    items = [{"n": n} for n in range(2 * PAGE_ITEMS + 5)]
    document = await written(payloads, items)
    assert is_paged(document) and document["count"] == len(items)  # type: ignore[index]
    assert len(json.dumps(document)) < 1_000  # the index stays small
    pages = await read(payloads, document)
    assert [len(p) for p in pages] == [PAGE_ITEMS, PAGE_ITEMS, 5]
    assert [item for page in pages for item in page] == items


async def test_large_items_make_smaller_pages() -> None:
    payloads = store()
    items = ["x" * 100_000 for _ in range(25)]
    pages = await read(payloads, await written(payloads, items))
    assert len(pages) > 1 and all(len(p) < 25 for p in pages)


@pytest.mark.parametrize(
    "document",
    [{PAGES_KEY: "s:abc"}, {PAGES_KEY: [3]}, {PAGES_KEY: ["nonsense"]}, {"count": 3}, "text"],
)
async def test_a_damaged_index_is_invalid_input(document: object) -> None:
    with pytest.raises(InvalidInput):
        await read(store(), document)


async def test_a_page_whose_bytes_changed_is_corrupt() -> None:
    payloads = store()
    document = await written(payloads, [{"n": n} for n in range(PAGE_ITEMS + 1)])
    backend = payloads.backend
    assert isinstance(backend, InMemoryPayloadBackend)
    key = next(iter(backend.objects))
    backend.objects[key] = b"[]"
    with pytest.raises(PayloadCorrupt):
        await read(payloads, document)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers() | st.text(max_size=40), max_size=2_500))
async def test_any_items_come_back_as_they_went(items: list[object]) -> None:
    payloads = store()
    pages = await read(payloads, await written(payloads, items))
    assert [item for page in pages for item in page] == items
