"""``tpf infra template`` in-process: JSON on stdout, or a file and one line saying so."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.resources import describe
from tpf.settings import Settings
from tpfctl.cli.infra import app

STACK = "clitmpl"
REFERENCE_PIPELINE_IDS = (
    "org.example.orders",
    "org.pipelineframework.restaurantapproval",
    "org.pipelineframework.csvpayments",
)


@pytest.fixture(autouse=True)
def only_this_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("TPF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TPF_STACK", STACK)


def test_the_template_on_stdout_is_json_naming_every_queue_of_the_stack() -> None:
    result = CliRunner().invoke(app, ["template", "--release", "1.0.0"])

    assert result.exit_code == 0, result.output
    template = json.loads(result.stdout)
    queues = {
        r["Properties"]["QueueName"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue"
    }
    stack = describe(Settings(), releases=[(p, "1.0.0") for p in REFERENCE_PIPELINE_IDS])
    assert queues == {stack.physical(n) for q in stack.queues for n in (q.name, q.dead_letter_name)}
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    assert worker["Environment"]["Variables"]["TPF_RELEASE"] == "1.0.0"


def test_the_template_written_to_a_file_is_the_one_printed(tmp_path: Path) -> None:
    target = tmp_path / "stack.json"

    written = CliRunner().invoke(app, ["template", "--output", str(target)])
    printed = CliRunner().invoke(app, ["template"])

    assert written.exit_code == 0, written.output
    assert json.loads(target.read_text()) == json.loads(printed.stdout)
    assert written.stdout.startswith(f"wrote the template of stack {STACK} to ")
