"""Children follow their owner: however the owner ends, SIGKILL included, its children end too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_until
from tpfctl import lifeline

CHILD = """
import signal, sys, threading
from tpfctl.lifeline import follow_owner
if sys.argv[1] == "ignores-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
follow_owner()
print("following", flush=True)
threading.Event().wait()
"""

OWNER = """
import sys
from tpfctl import lifeline
child = lifeline.spawn([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=sys.stdout)
print(child.pid, flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def owner_of_a_child(child_mode: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """An owner process with one child that follows it; both gone when the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, CHILD, child_mode],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert owner.stdout.readline().strip() == "following"
        try:
            yield owner, child
        finally:
            owner.kill()
            owner.wait(timeout=10)
            wait_until(lambda: not lifeline.alive(child), timeout=10, interval=0.05)


@pytest.mark.parametrize("child_mode", ["stops-on-sigterm", "ignores-sigterm", "frozen"])
def test_a_child_ends_within_seconds_of_its_owner_being_sigkilled(child_mode: str) -> None:
    with owner_of_a_child(child_mode, TPF_ORPHAN_GRACE="1") as (owner, child):
        assert lifeline.alive(child)
        if child_mode == "frozen":  # its watchdog cannot run: the kernel's rule must do
            os.kill(child, signal.SIGSTOP)
            wait_until(lambda: stat_state(child) == "T", timeout=10)
        owner.kill()
        owner.wait(timeout=10)
        wait_until(lambda: not lifeline.alive(child), timeout=10, interval=0.05)


def test_a_child_of_a_living_owner_keeps_running() -> None:
    with owner_of_a_child("stops-on-sigterm") as (owner, child):
        assert child in lifeline.children_of(owner.pid)
        assert lifeline.alive(child)


def stat_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_spawned_children_lead_their_own_process_group_in_the_owners_session() -> None:
    child = lifeline.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert os.getsid(child.pid) == os.getsid(0)
    finally:
        assert lifeline.stop_group(child, grace=10) == (-signal.SIGTERM, False)


def test_no_owner_no_pid_or_oneself_starts_no_watchdog() -> None:
    assert lifeline.follow_owner({}) is None
    assert lifeline.follow_owner({lifeline.OWNER_ENV: "not-a-pid"}) is None
    assert lifeline.follow_owner({lifeline.OWNER_ENV: str(os.getpid())}) is None
    assert lifeline.follow_owner({lifeline.OWNER_ENV: "1"}) is None


def test_a_zombie_counts_as_gone() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as exited:
        wait_until(lambda: not lifeline.alive(exited.pid), timeout=10)  # exited, not reaped
        assert Path(f"/proc/{exited.pid}").exists()
