"""Bringing a stack up to date: its resources (``infra.provision``), then what it stores
(``coordinator.upgrades``). ``tpf infra up`` and every stack ``tpf up`` owns go through here."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from coordinator.upgrades import Applied
from coordinator.upgrades.dynamodb import upgrade_tables
from infra.provision import ProvisionReport, provision
from tpf.settings import Settings
from tpf.substrate import Endpoints


@dataclass
class StackUpdate:
    resources: ProvisionReport
    upgrades: list[Applied]

    @property
    def changed(self) -> bool:
        return self.resources.changed or any(u.ran for u in self.upgrades)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.resources.to_dict(),
            "changed": self.changed,
            "upgrades": [asdict(u) for u in self.upgrades],
        }


def bring_up(settings: Settings, *, endpoints: Endpoints | None = None) -> StackUpdate:
    resources = provision(settings, endpoints=endpoints)
    fresh = resources.actions().get("table:executions") == "created"
    upgrades = asyncio.run(upgrade_tables(settings, endpoints=endpoints, fresh=fresh))
    return StackUpdate(resources, upgrades)
