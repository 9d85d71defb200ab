"""Item pages: a long list of items stored as pages, so no process holds all of it at once.

An expansion of 100,000 payments is 100,000 await requests and, later, 100,000 answers. Held
as one JSON list, each would grow the memory of whichever process builds or reads it with the
file's size. Instead, a list longer than one page is stored as pages and handed on as a small
index document::

    {"tpfPages": ["s:<digest>", "d:<digest>", ...], "count": 100000}

Each page is a JSON array of up to ``PAGE_ITEMS`` items (fewer when they are large, at most
about ``PAGE_BYTES``), stored as a payload of its own (``tpf.payloads``: content-addressed,
written once, read with its digest checked). A list that fits one page stays a plain JSON
list, as every list was before pages existed, so readers of either kind need no flag.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from tpf.errors import InvalidInput
from tpf.payloads import PayloadRef, PayloadStore

PAGE_ITEMS = 1_000
PAGE_BYTES = 1 << 20
PAGES_KEY = "tpfPages"


def is_paged(document: Any) -> bool:
    return isinstance(document, dict) and PAGES_KEY in document


class PageWriter:
    """Collects items (as JSON text) into pages; ``finish`` gives the list or its index."""

    def __init__(self, payloads: PayloadStore, tenant_id: str, execution_id: str) -> None:
        self.payloads, self.tenant_id, self.execution_id = payloads, tenant_id, execution_id
        self.pages: list[str] = []
        self.count = 0
        self._buffer: list[str] = []
        self._size = 0

    async def add(self, item: Any) -> None:
        """Add one JSON-ready item (dicts, lists, strings, numbers)."""
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        self._buffer.append(text)
        self._size += len(text) + 1
        self.count += 1
        if len(self._buffer) >= PAGE_ITEMS or self._size >= PAGE_BYTES:
            await self._flush()

    async def finish(self) -> Any:
        """The items as a plain list when they never filled a page, else the index."""
        if not self.pages:
            return [json.loads(text) for text in self._buffer]
        if self._buffer:
            await self._flush()
        return {PAGES_KEY: self.pages, "count": self.count}

    async def _flush(self) -> None:
        data = ("[" + ",".join(self._buffer) + "]").encode()
        ref = await self.payloads.put(self.tenant_id, self.execution_id, data)
        self.pages.append(ref.compact())
        self._buffer, self._size = [], 0


async def pages_of(
    payloads: PayloadStore, tenant_id: str, execution_id: str, document: Any
) -> AsyncIterator[list[Any]]:
    """The items of a plain list or a paged index, one page at a time, in order."""
    if isinstance(document, list):
        for start in range(0, len(document), PAGE_ITEMS):
            yield document[start : start + PAGE_ITEMS]
        return
    if not is_paged(document):
        raise InvalidInput("expected a list of items or an index of their pages")
    pages = document[PAGES_KEY]
    if not isinstance(pages, list) or not all(isinstance(p, str) for p in pages):
        raise InvalidInput(f"{PAGES_KEY} must be a list of payload references")
    for compact in pages:
        page = json.loads(await payloads.get(tenant_id, execution_id, _ref(compact)))
        if not isinstance(page, list):
            raise InvalidInput(f"page {compact} is not a JSON list")
        yield page


def _ref(compact: str) -> PayloadRef:
    if compact[:2] not in ("i:", "d:", "s:"):
        raise InvalidInput(f"not a payload reference: {compact[:40]!r}")
    return PayloadRef.from_compact(compact)
