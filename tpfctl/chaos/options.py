"""What a crash run does: its load, its process faults and its substrate faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tpfctl.chaos.faults import FaultRates


@dataclass(frozen=True)
class Options:
    executions: int = 300
    kills: int = 50
    freezes: int = 10
    duplicate_rate: float = 0.0
    substrate: str = "embedded"
    coordinators: int = 2
    workers: int = 3
    seed: int | None = None
    timeout_s: float = 600.0
    workdir: Path | None = None
    faults: FaultRates = field(default_factory=FaultRates)
    """Substrate faults per request, through the fault proxy (none: no proxy)."""
    blackouts: int = 0
    blackout_s: float = 8.0
    dynamodb_restarts: int = 0
    """Restarts of DynamoDB Local with its data kept (LocalStack substrate only)."""

    @property
    def proxied(self) -> bool:
        return self.faults.any or self.blackouts > 0

    @property
    def period_s(self) -> float:
        """How long faults are injected: long enough that each one meets work in flight."""
        return max(15.0, self.executions / 4, (self.kills + self.freezes) * 1.0)
