"""A role started during an outage waits it out; a configuration fault still ends it at once."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tpfctl.cli.common import _until_reachable


def outage() -> Exception:
    return EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def missing_table() -> Exception:
    error = {"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}
    return ClientError(error, "GetItem")  # type: ignore[arg-type]


async def test_a_role_started_during_an_outage_runs_once_the_substrate_is_back() -> None:
    attempts = 0

    async def main(stop: asyncio.Event) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("first call failed") from outage()

    await _until_reachable(main, asyncio.Event(), wait_s=30, role="worker")
    assert attempts == 3


async def test_a_missing_resource_ends_the_role_at_once() -> None:
    attempts = 0

    async def main(stop: asyncio.Event) -> None:
        nonlocal attempts
        attempts += 1
        raise missing_table()

    with pytest.raises(ClientError):
        await _until_reachable(main, asyncio.Event(), wait_s=30, role="worker")
    assert attempts == 1


async def test_an_outage_longer_than_the_wait_ends_the_role() -> None:
    async def main(stop: asyncio.Event) -> None:
        raise outage()

    with pytest.raises(EndpointConnectionError):
        await _until_reachable(main, asyncio.Event(), wait_s=0, role="worker")


async def test_a_stop_while_waiting_ends_the_role_quietly() -> None:
    stop = asyncio.Event()

    async def main(stop_: asyncio.Event) -> None:
        stop.set()
        raise outage()

    with pytest.raises(EndpointConnectionError):  # asked to stop while failing: no retry
        await _until_reachable(main, stop, wait_s=30, role="worker")
