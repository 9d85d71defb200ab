"""What the fleet's processes did between two moments: their request ledgers and CPU time.

A reading asks every role process for its ledger (``tpf.accounting.request_path``) and waits for
files written after the moment it stands for, so the difference of two readings counts the
requests made in between, by the processes that made them. CPU time comes from
``/proc/<pid>/stat`` (user + system, every thread).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpf.accounting import RequestLedger, request_path
from tpf.errors import ConfigurationError
from tpfctl.fleet import Fleet

_BOOKKEEPING = frozenset({"writtenAtEpochS", "pid"})


@dataclass(frozen=True)
class Reading:
    at: float
    ledgers: dict[str, dict[str, Any]]
    cpu: dict[str, float | None]
    roles: dict[str, str]


@dataclass(frozen=True)
class Window:
    """Two readings of the same fleet."""

    start: Reading
    end: Reading

    @property
    def seconds(self) -> float:
        return self.end.at - self.start.at

    def members(self, role: str | None = None) -> list[str]:
        return [name for name, r in self.end.roles.items() if role is None or r == role]

    def ledger(self, role: str | None = None) -> dict[str, Any]:
        """Requests of every process (or of one role) in the window, added up."""
        return RequestLedger.merge(
            [
                difference(self.end.ledgers[name], self.start.ledgers.get(name, {}))
                for name in self.members(role)
            ]
        )

    def cpu_seconds(self, role: str) -> float | None:
        spent = 0.0
        for name in self.members(role):
            before, after = self.start.cpu.get(name), self.end.cpu.get(name)
            if before is None or after is None:
                return None
            spent += after - before
        return spent


def read(fleet: Fleet, *, timeout: float = 15.0) -> Reading:
    """Every live member's ledger as written after now, and its CPU time now."""
    at = time.time()
    cpu = {m.name: cpu_seconds(m.process.pid) if m.process else None for m in fleet.members}
    ledgers: dict[str, dict[str, Any]] = {}
    for member in fleet.members:
        if member.alive:
            request_path(member.ledger_path).touch()
    deadline = time.monotonic() + timeout
    for member in fleet.members:
        if not member.alive:
            continue
        while True:
            snapshot = _load(member.ledger_path)
            if snapshot is not None and snapshot.get("writtenAtEpochS", 0.0) >= at:
                ledgers[member.name] = snapshot
                break
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"{member.name} wrote no ledger to {member.ledger_path} within {timeout}s"
                )
            time.sleep(0.05)
    roles = {m.name: m.role for m in fleet.members if m.name in ledgers}
    return Reading(at=at, ledgers=ledgers, cpu=cpu, roles=roles)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def difference(later: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``later - earlier`` for every number in a ledger snapshot."""
    out: dict[str, Any] = {}
    for key, value in later.items():
        if key in _BOOKKEEPING:
            continue
        before = earlier.get(key)
        if isinstance(value, dict):
            out[key] = difference(value, before if isinstance(before, dict) else {})
        elif isinstance(value, int | float):
            out[key] = value - (before if isinstance(before, int | float) else 0)
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after its last ')' don't.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return ticks / os.sysconf("SC_CLK_TCK")
