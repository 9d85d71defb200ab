"""Children follow their owner: no process the project starts outlives the one that started it.

Two halves, one variable. The owner starts each child in a process group of its own, in the
owner's session (so the owner can stop the child and anything the child started as one, and a
Ctrl-C at the terminal reaches the owner alone, which then stops its children in order), and
names itself in ``TPF_OWNER_PID``. The child calls :func:`follow_owner` first thing: a daemon
thread waits on a pidfd of the owner and, when the owner is gone (SIGKILL included, where no
clean-up of the owner's could run), asks the child to stop as SIGTERM would and exits hard after
a short grace::

    owner alive ────────────── owner dies ──── SIGTERM to self ──── grace ──── os._exit(70)
                                   │             (drain, as Ctrl-C)            (if still here)
                                   └ pidfd readable: no polling, no pid-reuse race

A child that is stopped (SIGSTOP: the crash harness freezes workers) runs no thread. For it the
kernel steps in: the owner's death orphans the child's process group, and POSIX sends a newly
orphaned group with a stopped member SIGHUP then SIGCONT. That is why the group stays in the
owner's session (a new session would be orphaned from the start, and never *become* so).

A parent-death signal (``PR_SET_PDEATHSIG``) is not used: it fires when the *thread* that
forked the child exits, and owners start children from helper threads (restarts, timers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

OWNER_ENV = "TPF_OWNER_PID"
ORPHAN_GRACE_ENV = "TPF_ORPHAN_GRACE"
EXIT_ORPHANED = 70
"""The exit status of a child that outlived its owner's grace (EX_SOFTWARE)."""
DEFAULT_ORPHAN_GRACE_S = 5.0

log = logging.getLogger("tpfctl.lifeline")


# -- the owner's half ------------------------------------------------------------------------


def owned_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) naming this process as the owner of a child."""
    return {**(os.environ if env is None else env), OWNER_ENV: str(os.getpid())}


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    stdin: IO[Any] | int | None = subprocess.DEVNULL,
    text: bool = False,
    cwd: Path | None = None,
) -> subprocess.Popen[Any]:
    """Start a child that follows this process: its own process group, and this pid as owner."""
    return subprocess.Popen(
        list(args),
        env=owned_env(env),
        stdout=stdout,
        stderr=stderr,
        stdin=stdin,
        text=text,
        cwd=cwd,
        process_group=0,
    )


def signal_group(process: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the child's whole process group (it leads one: see :func:`spawn`)."""
    if process.poll() is not None:
        return  # reaped: its pid (and so its group id) may belong to someone else now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def stop_group(process: subprocess.Popen[Any], *, grace: float) -> tuple[int, bool]:
    """SIGTERM the child's group, SIGKILL it after ``grace``; (exit status, whether killed)."""
    signal_group(process, signal.SIGTERM)
    try:
        return process.wait(timeout=grace), False
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        return process.wait(), True


# -- the child's half ------------------------------------------------------------------------


def follow_owner(environ: Mapping[str, str] | None = None) -> int | None:
    """If ``TPF_OWNER_PID`` names another process, stop this one when that one ends.

    Returns the owner's pid (None when there is none to follow). Safe to call more than once:
    only the first call in a process starts a watchdog.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(OWNER_ENV, "").strip()
    if not raw:
        return None
    try:
        owner = int(raw)
        grace = float(environ.get(ORPHAN_GRACE_ENV, DEFAULT_ORPHAN_GRACE_S))
    except ValueError:
        log.warning("ignoring %s=%r: not a pid", OWNER_ENV, raw)
        return None
    if owner <= 1 or owner == os.getpid():
        return None
    global _watching
    with _lock:
        if _watching is not None:
            return _watching
        _watching = owner
    threading.Thread(target=_watch, args=(owner, grace), name="owner-watchdog", daemon=True).start()
    return owner


_lock = threading.Lock()
_watching: int | None = None


def _watch(owner: int, grace: float) -> None:
    wait_for_exit(owner)
    log.warning(
        "owner process %d is gone: stopping (hard exit in %.0f s)",
        owner,
        grace,
        extra={"action": "orphaned"},
    )
    os.kill(os.getpid(), signal.SIGTERM)
    # This thread is the deadline itself: nothing else is left to wait on.
    time.sleep(grace)
    os._exit(EXIT_ORPHANED)


def wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` has exited (at once if it already has)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd on this kernel: fall back to asking every half second
        while alive(pid):
            time.sleep(0.5)
        return
    try:
        select.select([fd], [], [])  # a pidfd turns readable when its process exits
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    # The state follows the command name, which is in parentheses and may itself hold some.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc); empty where /proc is not available."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found
