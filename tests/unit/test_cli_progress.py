"""Progress bars of ``tpf upload --wait``, ``tpf redrive --where`` and ``tpf bench``: they
follow the work, end with it, and never write to stdout (nor at all without a terminal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.unit.cli_fakes import FakeApi, body, console, text, use
from tpf.codec import encode_envelope
from tpf.settings import Settings
from tpfctl.cli import operations
from tpfctl.cli.bench import Phases
from tpfctl.cli.common import Api
from tpfctl.cli.progress import bars, for_people
from tpfctl.cli.upload import Following, follow

EXECUTION = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
BASE = f"/tpf/control-plane/tenants/default/executions/{EXECUTION}"
BULK = "/tpf/admin/tenants/default/executions/redrive"
STARTED_MS = 5_000


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    fake = FakeApi()
    use(fake, monkeypatch, str(tmp_path))
    return fake


class DeadLetters:
    """The bulk re-drive route over ten DLQ executions; one changes while it is re-driven."""

    def __init__(self, changing: str = "e03") -> None:
        self.updated = {f"e{i:02d}": 1_000 + i for i in range(10)}
        self.status = dict.fromkeys(self.updated, "DLQ")
        self.changing = changing
        self.asked: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> dict[str, Any]:
        asked = body(request)
        self.asked.append(asked)
        before = asked.get("updatedBeforeEpochMs") or float("inf")
        picked = sorted(
            (at, e)
            for e, at in self.updated.items()
            if self.status[e] in asked["status"] and at < before
        )[: asked["limit"]]
        ids = [e for _, e in picked]
        report: dict[str, Any] = {"dryRun": asked["dryRun"], "executionIds": ids}
        report.update(matched=len(ids), redriven=0, skipped=0, skippedExecutionIds=[])
        if asked["dryRun"]:
            return report
        redriven = [e for e in ids if e != self.changing]
        skipped = [e for e in ids if e == self.changing]
        for e in ids:  # re-driven, or changed by someone else: updated now either way
            self.updated[e] = STARTED_MS + 1_000
            self.status[e] = "QUEUED" if e in redriven else "DLQ"
        report.update(executionIds=redriven, redriven=len(redriven))
        report.update(skipped=len(skipped), skippedExecutionIds=skipped)
        return report


def test_a_bulk_redrive_goes_a_few_seconds_at_a_time_and_reports_as_one_request(
    api: FakeApi,
) -> None:
    dead = DeadLetters()
    api.answer("POST", BULK, dead)
    bulk = {"status": ["DLQ"], "dryRun": False, "perSecond": 2.0, "limit": 1000}
    shown = console(terminal=True)

    with bars(wanted=True, console=shown) as progress:
        report = operations.redrive_where(Api(Settings()), BULK, bulk, progress, now_ms=5_000)

    assert [a["dryRun"] for a in dead.asked] == [True, False, False, False]
    assert [a["limit"] for a in dead.asked[1:]] == [4, 4, 2]  # 2 s at 2 per second
    assert all(a["updatedBeforeEpochMs"] == STARTED_MS for a in dead.asked)
    assert report["matched"] == 10 and report["redriven"] == 9 and report["skipped"] == 1
    assert report["skippedExecutionIds"] == ["e03"] and "e03" not in report["executionIds"]
    [task] = progress.tasks
    assert (task.total, task.completed) == (10, 10)
    assert "10/10" in text(shown)


def test_a_bulk_redrive_with_json_prints_the_report_alone_on_stdout(api: FakeApi) -> None:
    api.answer("POST", BULK, DeadLetters())

    done = CliRunner().invoke(
        operations.app, ["redrive", "--where", "status=DLQ", "--rate", "1000", "--json"]
    )

    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert set(report) == {
        "dryRun",
        "matched",
        "redriven",
        "skipped",
        "executionIds",
        "skippedExecutionIds",
    }
    assert (report["matched"], report["redriven"], report["skipped"]) == (10, 9, 1)


def test_a_bulk_redrive_for_people_prints_what_it_did_and_no_bar_without_a_terminal(
    api: FakeApi,
) -> None:
    api.answer("POST", BULK, DeadLetters())

    done = CliRunner().invoke(operations.app, ["redrive", "--where", "status=DLQ"])

    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "matched 10, re-drove 9, skipped 1 (changed meanwhile)"
    assert lines[1:] == [f"  e{i:02d}" for i in range(10) if i != 3]


def test_upload_wait_shows_the_answered_rows_and_ends_when_the_execution_ends(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    statuses = iter(["missing", "WAITING_EXTERNAL", "WAITING_EXTERNAL", "SUCCEEDED"])
    answered = iter([250, 1_000])
    seen: list[tuple[float | None, float]] = []

    def status(_: httpx.Request) -> dict[str, Any] | httpx.Response:
        now = next(statuses)
        if now == "missing":  # the upload's notification is not consumed yet
            return httpx.Response(404, json={"message": "no such execution"})
        return {"executionId": EXECUTION, "status": now, "stepIndex": 3}

    def waited_on(_: httpx.Request) -> dict[str, Any]:
        return {"stepId": "send-payment", "answered": next(answered), "total": 1_000}

    api.answer("GET", BASE, status)
    api.answer("GET", f"{BASE}/await", waited_on)
    api.answer("GET", f"{BASE}/result", {"resultPayload": encode_envelope("x", {"lines": 3})})
    shown = console(terminal=True)

    with bars(wanted=True, console=shown) as progress:
        following = Following(progress, EXECUTION)
        task = progress.tasks[0]

        def pause(_: float) -> None:  # no sleeping: note what the bar shows instead
            seen.append((task.total, task.completed))

        outcome = follow(Api(Settings()), "default", EXECUTION, 60, following, pause)

    assert outcome["result"] == {"lines": 3} and outcome["status"]["status"] == "SUCCEEDED"
    assert seen[1:] == [(1_000, 250), (1_000, 1_000)]
    assert progress.finished and "SUCCEEDED" in text(shown)
    assert capsys.readouterr().out == ""


def test_no_bar_is_drawn_for_json_or_without_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not for_people(as_json=True)
    assert not for_people()  # pytest's stdout is not a terminal
    quiet = console(terminal=False)
    with bars(wanted=True, console=quiet) as progress:
        progress.add_task("work", total=3, completed=2)
    with bars(wanted=False, console=console(terminal=True)) as hidden:
        assert hidden.disable

    assert progress.disable and text(quiet) == ""
    assert capsys.readouterr().out == ""


def test_what_a_command_prints_while_a_bar_is_drawn_goes_above_the_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = console(terminal=True)
    with bars(wanted=True, console=shown) as progress:
        phases = Phases(progress, ["cost", "search"], unwatched=pytest.fail)
        for name in ("cost", "search"):
            phases.start(name)
            print(json.dumps({"benchmark": name}))
        phases.finish()

    drawn = text(shown)
    assert '{"benchmark": "cost"}' in drawn and '{"benchmark": "search"}' in drawn
    assert "2/2" in drawn and capsys.readouterr().out == ""


def test_bench_phases_without_a_terminal_say_each_name_as_before() -> None:
    said: list[str] = []
    with bars(wanted=False) as progress:
        phases = Phases(progress, ["cost", "search"], unwatched=said.append)
        phases.start("cost")
        phases.start("search")
        phases.finish()

    assert said == ["cost", "search"]
