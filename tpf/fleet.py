"""A fleet: coordinator and worker processes started, watched and stopped as one.

Used by the commands that own a stack (``tpf demo``, ``tpf up``), the end-to-end tests and the
crash harness. Children get the substrate's endpoint and the stack's secrets through their
environment; nothing else needs configuring. Stopping sends SIGTERM (graceful drain) and only
kills a child that outlives the grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tpf.errors import ConfigurationError


@dataclass
class Member:
    role: str
    name: str
    args: list[str]
    log_path: Path
    ledger_path: Path
    env: dict[str, str] = field(default_factory=dict)
    """This member's own settings (its API port, say), over the fleet's."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Fleet:
    env: dict[str, str]
    workdir: Path
    members: list[Member] = field(default_factory=list)

    def add(self, role: str, name: str, *args: str, env: dict[str, str] | None = None) -> Member:
        member = Member(
            role=role,
            name=name,
            args=[sys.executable, "-m", "tpf", role, *args],
            log_path=self.workdir / f"{name}.log",
            ledger_path=self.workdir / f"{name}.ledger.json",
            env=env or {},
        )
        self.members.append(member)
        return member

    def start(self, member: Member) -> None:
        env = {**os.environ, **self.env, **member.env, "TPF_LEDGER_FILE": str(member.ledger_path)}
        log = member.log_path.open("ab")
        member.process = subprocess.Popen(
            member.args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    def start_all(self) -> None:
        for member in self.members:
            self.start(member)

    def wait_ready(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        until: Callable[[httpx.Response], bool] = lambda response: True,
    ) -> None:
        """Wait until ``url`` answers 200 (and ``until`` holds), failing fast if a member died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.members:
                if member.process is not None and member.process.poll() is not None:
                    raise ConfigurationError(
                        f"{member.name} exited with {member.process.returncode}; "
                        f"see {member.log_path}:\n{tail(member.log_path)}"
                    )
            try:
                response = httpx.get(url, timeout=1.0, headers=headers)
                if response.status_code == 200 and until(response):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ConfigurationError(f"{url} not ready within {timeout:.0f}s")

    def stop(self, member: Member, *, grace: float = 30.0) -> int | None:
        if member.process is None:
            return None
        if member.alive:
            member.process.send_signal(signal.SIGTERM)
        try:
            return member.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            member.process.kill()
            return member.process.wait()

    def stop_all(self, *, grace: float = 30.0) -> None:
        # Workers first, so their last results still find a coordinator.
        for member in sorted(self.members, key=lambda m: m.role != "worker"):
            if member.alive:
                member.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for member in self.members:
            self.stop(member, grace=grace)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
