"""Payloads, stored once, in the cheapest tier that fits (REFERENCE section 2, cost rules).

| size                  | where                                | why                           |
|-----------------------|--------------------------------------|-------------------------------|
| the record's room     | inline in the execution record       | no extra request at all       |
| <= 8 KiB              | an immutable payload item (DynamoDB) | <= 8 WRU, cheaper than a PUT  |
| larger                | an S3 object                         | $5 per million PUTs beats WRU |

The record's room is at least ``MAX_INLINE`` bytes, more when its ids are short
(``tpf.record_size``).

Keys derive from tenant, execution and the content's digest, so writing the same content twice
is harmless and a reference needs only the tier and digest. Reads verify the digest.

The answers an await recorded are not stored again for the step after it: the record refers
to them where they are (tier ``answers``, in the coordinator only).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tpf.errors import TpfError
from tpf.payloads.port import PayloadBackend

MAX_INLINE = 64
"""Bytes of JSON every execution record has room for; a record with more room (short ids, see
``tpf.record_size.inline_room``) takes more."""


def digest_of(data: bytes) -> str:
    """sha256 as unpadded base64url: 43 characters instead of 71 for ``sha256:<hex>``."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class PayloadRef(BaseModel):
    """Where a payload lives: inline (tiny), a payload item, or an S3 object; always with digest.
    Or, tier ``answers``: the answers an await recorded, which are stored already, in its
    interaction, and are read back from there rather than written twice (``digest`` names the
    await unit; ``PayloadStore.answers`` reads them, in the coordinator only).

    Compact form in the record: ``i:<json>``, ``d:<digest>``, ``s:<digest>``, ``a:<unitId>``.
    The item key and object key derive from tenant, execution and digest, so they need not be
    stored.
    """

    model_config = ConfigDict(frozen=True)

    tier: Literal["inline", "item", "s3", "answers"]
    digest: str
    inline: str | None = None

    @classmethod
    def of_inline(cls, text: str) -> PayloadRef:
        return cls(tier="inline", digest=digest_of(text.encode()), inline=text)

    @classmethod
    def of_answers(cls, unit_id: str) -> PayloadRef:
        return cls(tier="answers", digest=unit_id)

    def compact(self) -> str:
        if self.tier == "inline":
            return f"i:{self.inline}"
        return f"{_TAGS[self.tier]}:{self.digest}"

    @classmethod
    def from_compact(cls, value: str) -> PayloadRef:
        tag, _, rest = value.partition(":")
        if tag == "i":
            return cls.of_inline(rest)
        return cls(tier=_TIERS.get(tag, "s3"), digest=rest)


_TAGS: dict[str, str] = {"item": "d", "s3": "s", "answers": "a"}
_TIERS: dict[str, Literal["item", "s3", "answers"]] = {"d": "item", "s": "s3", "a": "answers"}
AnswersReader = Callable[[str, str], Awaitable[bytes]]
"""(tenant, unit) → the answers that unit recorded, as its resume handed them on."""


ITEM_LIMIT = 8 * 1024


class PayloadCorrupt(TpfError):
    """Stored bytes whose digest is not the one referenced."""


class PayloadMissing(TpfError):
    """A reference to a payload that is not (or no longer) stored."""


def item_key(tenant_id: str, execution_id: str, digest: str) -> str:
    return f"{tenant_id}#{execution_id}#{digest}"


def object_key(tenant_id: str, execution_id: str, digest: str) -> str:
    return f"{tenant_id}/{execution_id}/{digest}"


def tier_for(size: int, inline_limit: int = MAX_INLINE) -> str:
    if size <= inline_limit:
        return "inline"
    return "item" if size <= ITEM_LIMIT else "s3"


class PayloadStore:
    """Tier choice and digest checks over a backend (AWS or in-memory)."""

    def __init__(self, backend: PayloadBackend) -> None:
        self.backend = backend
        self.answers: AnswersReader | None = None
        """Reads ``answers`` references: set in the coordinator, which alone writes them (and
        resolves them before a command leaves: a worker is never handed one)."""

    async def put(
        self, tenant_id: str, execution_id: str, data: bytes, *, inline_limit: int = MAX_INLINE
    ) -> PayloadRef:
        """Store ``data`` once; inline (no request) when it is at most ``inline_limit`` bytes."""
        tier = tier_for(len(data), inline_limit)
        if tier == "inline":
            return PayloadRef.of_inline(data.decode())
        digest = digest_of(data)
        if tier == "item":
            await self.backend.write_item(item_key(tenant_id, execution_id, digest), data)
        else:
            await self.backend.write_object(object_key(tenant_id, execution_id, digest), data)
        return PayloadRef(tier=tier, digest=digest)  # type: ignore[arg-type]

    async def get(self, tenant_id: str, execution_id: str, ref: PayloadRef) -> bytes:
        if ref.tier == "inline":
            return (ref.inline or "").encode()
        if ref.tier == "answers":
            if self.answers is None:
                raise PayloadMissing(f"payload {ref.compact()} is read by the coordinator only")
            return await self.answers(tenant_id, ref.digest)
        if ref.tier == "item":
            data = await self.backend.read_item(item_key(tenant_id, execution_id, ref.digest))
        else:
            data = await self.backend.read_object(object_key(tenant_id, execution_id, ref.digest))
        if data is None:
            raise PayloadMissing(f"payload {ref.compact()} of execution {execution_id} is gone")
        if digest_of(data) != ref.digest:
            raise PayloadCorrupt(f"payload {ref.compact()} of execution {execution_id} is corrupt")
        return data
