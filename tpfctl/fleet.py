"""A fleet: coordinator and worker processes started, supervised and stopped as one.

Used by the commands that own a stack (``tpf demo``, ``tpf up``, ``tpf bench``), the end-to-end
tests and the crash harness. Children get the substrate's endpoint and the stack's secrets
through their environment; nothing else needs configuring.

Each member runs in a process group of its own and follows its owner (:mod:`tpfctl.lifeline`), so
no member outlives the fleet's process, however that process ends. While the fleet runs, a
supervisor thread watches the members:

- exit status 0 is a member's own decision (a drained worker leaves): it stays down;
- any other end that nobody asked for is a crash: logged as an error with the exit status and
  the last lines of the member's log, counted in :attr:`Fleet.crashes`, and the member is
  started again after a backoff that doubles per crash in a row (capped);
- a member someone stops or kills on purpose (:meth:`Fleet.kill`, :meth:`Fleet.stop`) is
  *held*: it stays down until someone starts it again.

Stopping sends SIGTERM to each member's group (a graceful drain, workers first so their last
results still find a coordinator) and SIGKILLs only a group that outlives the grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tpf.errors import ConfigurationError
from tpfctl import lifeline

log = logging.getLogger("tpfctl.fleet")

BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 30.0
STABLE_AFTER_S = 60.0
"""A member that ran this long before crashing starts its backoff afresh."""
WATCH_INTERVAL_S = 0.25


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
    held: bool = False
    """Stopped or killed on purpose: the supervisor leaves it down."""
    started_at: float = 0.0
    crashes_in_a_row: int = 0
    restart_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(frozen=True)
class Crash:
    """A member that ended without being asked to, and what the supervisor did about it."""

    name: str
    status: int
    ran_s: float
    restart_in_s: float
    log_tail: str

    def describe(self) -> str:
        how = f"signal {-self.status}" if self.status < 0 else f"status {self.status}"
        return (
            f"{self.name} exited unexpectedly ({how}) after {self.ran_s:.1f}s; "
            f"restarting it in {self.restart_in_s:.1f}s"
        )


@dataclass(frozen=True)
class Stopped:
    name: str
    status: int | None
    seconds: float
    killed: bool


@dataclass
class Fleet:
    env: dict[str, str]
    workdir: Path
    members: list[Member] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    """Every unexpected exit since the fleet started; each was followed by a restart."""
    on_crash: Callable[[Crash], None] | None = None
    """Called (from the supervisor thread) after each crash is logged."""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _closing: threading.Event = field(default_factory=threading.Event, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)

    def add(self, role: str, name: str, *args: str, env: dict[str, str] | None = None) -> Member:
        member = Member(
            role=role,
            name=name,
            args=[sys.executable, "-m", "tpfctl", role, *args],
            log_path=self.workdir / f"{name}.log",
            ledger_path=self.workdir / f"{name}.ledger.json",
            env=env or {},
        )
        with self._lock:
            self.members.append(member)
        return member

    # -- one member --------------------------------------------------------------------------

    def start(self, member: Member) -> None:
        """Start ``member`` (again), and supervise it from now on."""
        with self._lock:
            env = {**self.env, **member.env, "TPF_LEDGER_FILE": str(member.ledger_path)}
            with member.log_path.open("ab") as log_file:
                member.process = lifeline.spawn(
                    member.args, env={**os.environ, **env}, stdout=log_file, stderr=log_file
                )
            member.held, member.restart_at = False, None
            member.started_at = time.monotonic()
            self._supervise()

    def kill(self, member: Member, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the member's group on purpose: it stays down until started again."""
        with self._lock:
            member.held, member.restart_at = True, None
            if member.process is not None:
                lifeline.signal_group(member.process, sig)
        if sig == signal.SIGKILL and member.process is not None:
            member.process.wait()

    def stop(self, member: Member, *, grace: float = 30.0) -> Stopped:
        """SIGTERM (a graceful drain), SIGKILL after ``grace``; the member stays down."""
        with self._lock:
            member.held, member.restart_at = True, None
        began = time.monotonic()
        if member.process is None:
            return Stopped(member.name, None, 0.0, killed=False)
        status, killed = lifeline.stop_group(member.process, grace=grace)
        return Stopped(member.name, status, time.monotonic() - began, killed)

    # -- the whole fleet ---------------------------------------------------------------------

    def start_all(self) -> None:
        for member in self.members:
            self.start(member)

    def stop_all(self, *, grace: float = 30.0) -> list[Stopped]:
        """Stop supervising, then stop every member within ``grace`` (workers first)."""
        self._closing.set()
        with self._lock:
            members = sorted(self.members, key=lambda m: m.role != "worker")
            for member in members:
                member.held = True
                if member.process is not None:
                    lifeline.signal_group(member.process, signal.SIGTERM)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        return [self.stop(member, grace=grace) for member in members]

    def wait_ready(
        self,
        url: str,
        *,
        timeout: float = 120.0,
        headers: dict[str, str] | None = None,
        until: Callable[[httpx.Response], bool] = lambda response: True,
    ) -> None:
        """Wait until ``url`` answers 200 (and ``until`` holds), failing fast on a crash.

        A crash ends the wait at once, so the timeout only bounds a hang; it is generous
        because a fresh install's first start compiles its imports, which takes over 30 s on
        a busy 2-core machine."""
        crashes = len(self.crashes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.crashes) > crashes:
                crash = self.crashes[crashes]
                raise ConfigurationError(
                    f"{crash.name} exited with {crash.status} while starting; "
                    f"see {self.workdir / crash.name}.log:\n{crash.log_tail}"
                )
            try:
                response = httpx.get(url, timeout=1.0, headers=headers)
                if response.status_code == 200 and until(response):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ConfigurationError(f"{url} not ready within {timeout:.0f}s")

    # -- supervision -------------------------------------------------------------------------

    def _supervise(self) -> None:
        if self._supervisor is None and not self._closing.is_set():
            self._supervisor = threading.Thread(
                target=self._watch, name="fleet-supervisor", daemon=True
            )
            self._supervisor.start()

    def _watch(self) -> None:
        while not self._closing.wait(WATCH_INTERVAL_S):
            try:
                with self._lock:
                    for member in self.members:
                        self._check(member)
            except Exception:  # the supervisor must outlive whatever one check trips on
                log.exception("fleet supervisor: a check failed; carrying on")

    def _check(self, member: Member) -> None:
        if member.held or member.process is None or self._closing.is_set():
            return
        if member.restart_at is not None:
            if time.monotonic() >= member.restart_at:
                self.start(member)
            return
        status = member.process.poll()
        if status is None or status == 0:
            if status == 0:
                member.held = True  # it chose to leave (a drained worker, say)
            return
        ran = time.monotonic() - member.started_at
        member.crashes_in_a_row = 1 if ran >= STABLE_AFTER_S else member.crashes_in_a_row + 1
        delay = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2 ** (member.crashes_in_a_row - 1))
        member.restart_at = time.monotonic() + delay
        crash = Crash(member.name, status, ran, delay, tail(member.log_path))
        self.crashes.append(crash)
        log.error(
            "%s\n%s",
            crash.describe(),
            crash.log_tail,
            extra={"action": "member_crashed", "member": member.name, "status": status},
        )
        if self.on_crash is not None:
            self.on_crash(crash)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
