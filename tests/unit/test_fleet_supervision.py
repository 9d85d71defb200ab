"""A fleet restarts a member that crashes, leaves alone one that chose to leave or was stopped,
and stops everything within the grace it is given."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_until
from tpfctl import fleet as fleet_module
from tpfctl.fleet import Crash, Fleet, Member

SLEEPS = "import time; print('up', flush=True); time.sleep(600)"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    crashes: list[Crash] = []
    fleet = Fleet(env={}, workdir=tmp_path, on_crash=crashes.append)
    yield fleet
    fleet.stop_all(grace=5)


def member(fleet: Fleet, name: str, code: str) -> Member:
    added = Member(
        role="test",
        name=name,
        args=[sys.executable, "-c", code],
        log_path=fleet.workdir / f"{name}.log",
        ledger_path=fleet.workdir / f"{name}.ledger.json",
    )
    fleet.members.append(added)
    fleet.start(added)
    return added


def test_a_crashed_member_is_logged_with_its_status_and_last_lines_then_restarted(
    fleet: Fleet,
) -> None:
    crashing = member(fleet, "crashing", "print('about to fail', flush=True); raise SystemExit(3)")
    wait_until(lambda: len(fleet.crashes) >= 2, timeout=20)
    first, second = fleet.crashes[:2]
    assert (first.name, first.status) == ("crashing", 3)
    assert "about to fail" in first.log_tail
    assert "exited unexpectedly (status 3)" in first.describe()
    # Crashes in a row back off: the second restart waits twice as long as the first.
    assert second.restart_in_s == 2 * first.restart_in_s
    assert crashing.log_path.read_text().count("about to fail") >= 2


def test_backoff_is_capped(monkeypatch: pytest.MonkeyPatch, fleet: Fleet) -> None:
    monkeypatch.setattr(fleet_module, "BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(fleet_module, "BACKOFF_CAP_S", 0.2)
    member(fleet, "crashing", "raise SystemExit(1)")
    wait_until(lambda: len(fleet.crashes) >= 5, timeout=30)
    assert [c.restart_in_s for c in fleet.crashes[:5]] == [0.05, 0.1, 0.2, 0.2, 0.2]


def test_a_member_killed_on_purpose_stays_down_until_started(fleet: Fleet) -> None:
    victim = member(fleet, "victim", SLEEPS)
    wait_until(lambda: "up" in victim.log_path.read_text(), timeout=10)
    fleet.kill(victim)
    assert not victim.alive
    # The supervisor checks every quarter second; give it several looks.
    with pytest.raises(AssertionError):
        wait_until(lambda: victim.alive or fleet.crashes, timeout=1.5)
    fleet.start(victim)
    assert victim.alive and fleet.crashes == []


def test_a_member_that_exits_zero_chose_to_leave_and_is_not_restarted(fleet: Fleet) -> None:
    leaving = member(fleet, "leaving", "pass")
    wait_until(lambda: leaving.held, timeout=10)
    assert fleet.crashes == [] and not leaving.alive


def test_stopping_the_fleet_stops_every_member_and_says_how(fleet: Fleet) -> None:
    polite = member(fleet, "polite", SLEEPS)
    stubborn = member(
        fleet,
        "stubborn",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(600)",
    )
    for m in (polite, stubborn):
        wait_until(lambda m=m: "up" in m.log_path.read_text(), timeout=10)
    stopped = {s.name: s for s in fleet.stop_all(grace=1)}
    assert stopped["polite"].status == -signal.SIGTERM and not stopped["polite"].killed
    assert stopped["stubborn"].status == -signal.SIGKILL and stopped["stubborn"].killed
    assert fleet.crashes == []
