"""Outages of the substrate for the crash harness: blackouts, DynamoDB Local restarts, and what
the fleet must show for them (faults that really happened, loops that never restarted)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tpfctl.chaos.dynamodb_local import DiskDynamoDB
from tpfctl.chaos.faults import FaultProxy
from tpfctl.chaos.options import Options


def requested_faults(options: Options) -> dict[str, bool]:
    rates = options.faults
    return {
        "throttle": rates.throttle > 0,
        "latency": rates.latency > 0,
        "drop": rates.drop > 0,
        "blackout": options.blackouts > 0,
        "dynamodb_restart": options.dynamodb_restarts > 0,
        "error": rates.error > 0,
    }


class Outages:
    """Blackouts through the proxy and restarts of the on-disk DynamoDB Local."""

    def __init__(
        self,
        proxy: FaultProxy,
        disk: DiskDynamoDB | None,
        options: Options,
        say: Callable[[str], None],
    ) -> None:
        self.proxy, self.disk, self.options, self.say = proxy, disk, options, say

    def blackout(self) -> bool:
        self.say(f"blackout of every service for {self.options.blackout_s:g} s")
        self.proxy.blackout(self.options.blackout_s)
        return True

    def restart_dynamodb(self) -> bool:
        assert self.disk is not None
        self.say("restarting DynamoDB Local (data kept)")
        self.disk.restart()
        return True


def disk_dynamodb(
    options: Options, workdir: Path, resources: contextlib.ExitStack
) -> DiskDynamoDB | None:
    if not options.dynamodb_restarts:
        return None
    if options.substrate != "localstack":
        raise ValueError("--dynamodb-restarts needs --substrate localstack (DynamoDB Local)")
    disk = DiskDynamoDB(workdir / "dynamodb", workdir / "dynamodb.log")
    return resources.enter_context(disk)


def restarted_loops(api_url: str) -> float:
    """Restarts of supervised loops a coordinator reports (0 when it cannot be asked)."""
    try:
        page = httpx.get(f"{api_url}/q/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "tpf_loop_restarts_total"
    )
