"""``org.example.greeting``: one pipeline id, two releases, for rollouts.

``v1`` and ``v2`` declare the same pipeline with different code and contracts, so a test can
register both, activate one after the other and see which release ran an execution from its
output (``release`` is ``"1"`` or ``"2"``). ``delayMs`` keeps an execution in its ``pause`` step
for that long, so it can still be running while another release is activated::

    tpf release build examples.greeting.v1:pipeline --version 1.0.0
    tpf release build examples.greeting.v2:pipeline --version 2.0.0
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PIPELINE_ID = "org.example.greeting"
MAX_DELAY_MS = 30_000


class CamelModel(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class GreetingRequest(CamelModel):
    """The input both releases take: ``{"name": "Ada", "delayMs": 0}``."""

    name: str = Field(min_length=1, max_length=200)
    delay_ms: int = Field(default=0, ge=0, le=MAX_DELAY_MS)


class Guest(CamelModel):
    name: str
    delay_ms: int
