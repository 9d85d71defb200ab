from __future__ import annotations

import json
import uuid

import pytest

from tpf.payloads import ITEM_LIMIT, MAX_INLINE, PayloadCorrupt, PayloadMissing, PayloadStore


def document(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes."""
    return json.dumps("x" * (size - 2)).encode()


@pytest.mark.parametrize(
    ("size", "tier"),
    [
        (MAX_INLINE, "inline"),
        (MAX_INLINE + 1, "item"),
        (ITEM_LIMIT, "item"),
        (ITEM_LIMIT + 1, "s3"),
    ],
)
async def test_a_payload_goes_to_the_cheapest_tier_that_fits_and_reads_back(
    payload_store: PayloadStore, size: int, tier: str
) -> None:
    execution = str(uuid.uuid4())
    data = document(size)
    ref = await payload_store.put("acme", execution, data)
    assert ref.tier == tier
    assert await payload_store.get("acme", execution, ref) == data


async def test_writing_the_same_payload_twice_is_harmless(payload_store: PayloadStore) -> None:
    execution = str(uuid.uuid4())
    first = await payload_store.put("acme", execution, document(500))
    second = await payload_store.put("acme", execution, document(500))
    assert first == second
    assert await payload_store.get("acme", execution, second) == document(500)


async def test_a_payload_whose_bytes_changed_is_refused(payload_store: PayloadStore) -> None:
    execution = str(uuid.uuid4())
    ref = await payload_store.put("acme", execution, document(20_000))
    forged = ref.model_copy(
        update={"digest": ref.digest[:-2] + ("AA" if ref.digest[-2:] != "AA" else "BB")}
    )
    # Same location scheme, other digest: store tampered bytes under the forged reference.
    from tpf.payloads import object_key

    await payload_store.backend.write_object(
        object_key("acme", execution, forged.digest), document(20_000)
    )
    with pytest.raises(PayloadCorrupt):
        await payload_store.get("acme", execution, forged)


async def test_a_reference_to_nothing_is_reported_missing(payload_store: PayloadStore) -> None:
    ref = await payload_store.put("acme", str(uuid.uuid4()), document(500))
    with pytest.raises(PayloadMissing):
        await payload_store.get("acme", str(uuid.uuid4()), ref)
