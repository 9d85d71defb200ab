"""Our attribute value (de)serializer is boto3's, with a shortcut for strings and integers."""

from __future__ import annotations

from decimal import Decimal, DecimalException
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from tpf.dynamodb import deserialize, serialize

boto_serialize = TypeSerializer().serialize
boto_deserialize = TypeDeserializer().deserialize

values = st.one_of(
    st.text(),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.booleans(),
    st.none(),
    st.binary(min_size=1),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, max_value=10**20, min_value=-(10**20)
    ),
    st.lists(st.text(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=0, max_value=10**9), max_size=3),
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6))
def test_items_go_to_the_wire_and_back_as_boto3_takes_them(item: dict[str, Any]) -> None:
    wire = serialize(item)

    assert wire == {k: boto_serialize(v) for k, v in item.items()}
    assert deserialize(wire) == {k: boto_deserialize(v) for k, v in wire.items()}


def test_numbers_come_back_as_decimals_and_oversized_integers_are_refused() -> None:
    assert deserialize({"v": {"N": "7"}}) == {"v": Decimal(7)}
    assert type(deserialize({"v": {"N": "7"}})["v"]) is Decimal
    with pytest.raises(DecimalException):
        serialize({"v": 10**38})
