"""A payments file read and written a piece at a time: a worker's memory does not grow with it.

The upload is copied to a local spool (memory up to ``SPOOL`` bytes, a temporary file beyond),
checked to be UTF-8 in one pass, then parsed row by row in a second. Rejected rows are written
in pages beside the manifest as they are met, and read back a page at a time when the output
is written; the output itself goes to a spool and is uploaded from there (in parts when large).
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import AsyncIterator, Generator
from typing import IO

from examples.csv_payments.files import Files
from examples.csv_payments.records import (
    Limits,
    OutputLine,
    RejectedLine,
    check_size,
    empty_file,
    not_utf8,
)

SPOOL = 8 << 20
"""Bytes of a file kept in memory while it is read or written; the rest goes to local disk."""
CHUNK = 1 << 20
REJECTED_PAGE = 1_000


def spooled_size(spool: IO[bytes], limits: Limits) -> None:
    """``CSV_TOO_LARGE`` when the copied file is over the limit (for uploads of unknown size)."""
    spool.seek(0, io.SEEK_END)
    check_size(spool.tell(), limits)
    spool.seek(0)


def text_lines(spool: IO[bytes]) -> Generator[str, None, None]:
    """The file's physical lines, endings kept and its BOM removed, once a first pass found it
    to be non-empty UTF-8 (``CSV_NOT_UTF8`` with the offset of the first bad byte, or
    ``CSV_EMPTY``)."""
    spool.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, content = 0, False
    while chunk := spool.read(CHUNK):
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as error:
            raise not_utf8(offset + error.start) from None
        content = content or bool((text if offset else text.removeprefix("\ufeff")).strip())
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise not_utf8(offset - len(decoder.getstate()[0])) from None
    if not content:
        raise empty_file()
    spool.seek(0)
    reader = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    try:
        first = True
        for line in reader:
            yield line.removeprefix("\ufeff") if first else line
            first = False
    finally:
        reader.detach()  # the spool is its owner's to close


class RejectedPages:
    """Rejected rows, written as they come in pages of ``REJECTED_PAGE`` under ``prefix``."""

    def __init__(self, store: Files, bucket: str, prefix: str) -> None:
        self.store, self.bucket, self.prefix = store, bucket, prefix
        self.keys: list[str] = []
        self.count = 0
        self._page: list[RejectedLine] = []

    async def add(self, row: RejectedLine) -> None:
        self._page.append(row)
        self.count += 1
        if len(self._page) >= REJECTED_PAGE:
            await self._flush()

    async def finish(self) -> list[str]:
        if self._page:
            await self._flush()
        return self.keys

    async def _flush(self) -> None:
        key = f"{self.prefix}/rejected-{len(self.keys):05d}.json"
        document = [row.model_dump(mode="json", by_alias=True) for row in self._page]
        await self.store.write(self.bucket, key, json.dumps(document).encode(), "application/json")
        self.keys.append(key)
        self._page = []


async def rejected_rows(store: Files, bucket: str, keys: list[str]) -> AsyncIterator[RejectedLine]:
    for key in keys:
        for row in json.loads(await store.read(bucket, key, None)):
            yield RejectedLine.model_validate(row)


async def in_line_order(
    first: AsyncIterator[OutputLine], second: AsyncIterator[OutputLine]
) -> AsyncIterator[OutputLine]:
    """Two streams each in line order, merged into one."""
    a, b = await anext(first, None), await anext(second, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.line <= b.line):
            assert a is not None
            yield a
            a = await anext(first, None)
        else:
            yield b
            b = await anext(second, None)
