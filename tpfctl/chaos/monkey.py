"""What the harness does to the fleet: SIGKILL with restart, SIGSTOP/SIGCONT, duplicate messages.

The substrate is never touched: it lives in the harness's own process (embedded) or outside it
(LocalStack), so every fault is one a real deployment sees — a process dies or stalls, SQS
delivers a message twice.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpfctl.fleet import Fleet, Member


@dataclass
class Tally:
    kills: int = 0
    kills_in_flight: int = 0
    """Kills of a worker that was running a long step: its transition must be taken over."""
    freezes: int = 0
    freezes_in_flight: int = 0
    """Freezes of a worker that was running a long step: its result must come back late."""
    duplicates: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class Monkey:
    """Kills any member (restarting it after a moment) and freezes workers past their deadline."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        rng: random.Random,
        tally: Tally,
        freeze_s: tuple[float, float],
        invocations: Path,
        long_s: float,
    ) -> None:
        self.fleet, self.rng, self.tally = fleet, rng, tally
        self.freeze_s, self.invocations, self.long_s = freeze_s, invocations, long_s
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._frozen: dict[int, subprocess.Popen[bytes]] = {}
        # Frozen mid-step: counted when thawed alive (a kill meanwhile means no late result).
        self._frozen_mid_step: set[int] = set()

    def kill(self) -> bool:
        """SIGKILL a random live member, half the time a worker mid-step when one is (so
        every run tests a takeover); False when none is alive right now."""
        with self._lock:
            alive = [m for m in self.fleet.members if m.alive]
            if not alive:
                return False
            busy = self._running_long_steps()
            busy_workers = [m for m in alive if m.role == "worker" and m.process.pid in busy]  # type: ignore[union-attr]
            victim = self.rng.choice(
                busy_workers if busy_workers and self.rng.random() < 0.5 else alive
            )
            assert victim.process is not None
            if victim.role == "worker" and victim.process.pid in busy:
                self.tally.add("kills_in_flight")
            self.fleet.kill(victim)  # held: the fleet's supervisor leaves the restart to us
            self._frozen.pop(victim.process.pid, None)
            self._frozen_mid_step.discard(victim.process.pid)
            self.tally.add("kills")
        self._later(self.rng.uniform(0.3, 2.0), self._restart, victim)
        return True

    def freeze(self) -> bool:
        """SIGSTOP a worker, preferably one running a long step; False when none can be."""
        with self._lock:
            workers = [
                m
                for m in self.fleet.members
                if m.role == "worker" and m.alive and m.process.pid not in self._frozen  # type: ignore[union-attr]
            ]
            if not workers:
                return False
            busy = self._running_long_steps()
            busy_workers = [m for m in workers if m.process.pid in busy]  # type: ignore[union-attr]
            victim = self.rng.choice(busy_workers or workers)
            process = victim.process
            assert process is not None
            process.send_signal(signal.SIGSTOP)
            self._frozen[process.pid] = process
            self.tally.add("freezes")
            if busy_workers:
                self._frozen_mid_step.add(process.pid)
        self._later(self.rng.uniform(*self.freeze_s), self._thaw, process)
        return True

    def release(self) -> None:
        """Cancel pending restarts' delays and thaw everything: the fleet must be whole again."""
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            for process in list(self._frozen.values()):
                self._thaw(process, cut_short=True)
            for member in self.fleet.members:
                if not member.alive:
                    self.fleet.start(member)

    def _restart(self, member: Member) -> None:
        with self._lock:
            if not member.alive:
                self.fleet.start(member)

    def _thaw(self, process: subprocess.Popen[bytes], *, cut_short: bool = False) -> None:
        """SIGCONT; a full freeze of a worker mid-step counts once it wakes to a lost deadline."""
        with self._lock:
            if self._frozen.pop(process.pid, None) is None:
                return  # killed while frozen, or thawed already
            if process.poll() is None:  # Popen refuses to signal a reaped pid
                process.send_signal(signal.SIGCONT)
                if process.pid in self._frozen_mid_step and not cut_short:
                    self.tally.add("freezes_in_flight")
            self._frozen_mid_step.discard(process.pid)

    def _later(self, seconds: float, fn: Any, arg: Any) -> None:
        timer = threading.Timer(seconds, fn, (arg,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _running_long_steps(self) -> set[int]:
        """Pids that started a long step recently enough to be running it still."""
        now, pids = time.time(), set()
        for path in self.invocations.glob("*.log"):
            lines = path.read_text().splitlines()[-20:]
            for line in lines:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("long") and now - entry["at"] < self.long_s - 1.5:
                    pids.add(int(entry["pid"]))
        return pids


class Duplicator:
    """Delivers a fraction of the messages on the work and results queues twice.

    It borrows a batch, sends a copy of some, and makes the originals visible again at once, so
    consumers receive both: a duplicate delivery, as SQS at-least-once allows.
    """

    def __init__(
        self, sqs: Any, urls: list[str], *, rate: float, rng: random.Random, tally: Tally
    ) -> None:
        self.sqs, self.urls, self.rate, self.rng, self.tally = sqs, urls, rate, rng, tally
        self._seen: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            for url in self.urls:
                try:
                    self._once(url)
                except Exception:  # a failed borrow only means fewer duplicates
                    continue

    def _once(self, url: str) -> None:
        messages = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
        ).get("Messages", [])
        for m in messages:
            if m["MessageId"] not in self._seen and self.rng.random() < self.rate:
                self.sqs.send_message(QueueUrl=url, MessageBody=m["Body"])
                self.tally.add("duplicates")
            self._seen.add(m["MessageId"])
        if messages:
            self.sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages)
                ],
            )
