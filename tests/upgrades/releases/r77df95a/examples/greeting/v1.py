"""Release 1 of ``org.example.greeting``: ``{"greeting": "Hello, Ada.", "release": "1"}``."""

from __future__ import annotations

import asyncio

from examples.greeting import PIPELINE_ID, CamelModel, GreetingRequest, Guest
from tpf.errors import NonRetryable
from tpf.pipeline import Pipeline

RELEASE = "1"


class Greeting(CamelModel):
    greeting: str
    release: str


pipeline = Pipeline(PIPELINE_ID, input=GreetingRequest)


@pipeline.step()
def welcome(request: GreetingRequest) -> Guest:
    name = " ".join(request.name.split())
    if not name:
        raise NonRetryable("a greeting needs a name", error_code="INVALID_NAME")
    return Guest(name=name, delay_ms=request.delay_ms)


@pipeline.step()
async def pause(guest: Guest) -> Guest:
    # Sleeping is idempotent: a redelivered transition just waits again.
    await asyncio.sleep(guest.delay_ms / 1000)
    return guest


@pipeline.step()
def greet(guest: Guest) -> Greeting:
    return Greeting(greeting=f"Hello, {guest.name}.", release=RELEASE)
