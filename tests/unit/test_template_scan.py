"""The generated template under a security scanner (checkov): nothing fails, something passes,
and every finding it waives is waived in the template itself, with a reason.

checkov lives in its own virtualenv (``make scan`` builds ``.venv-checkov``); ``TPF_CHECKOV``
names another executable. Without it the test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.template import render, stack_template
from tests.substrates import require
from tpf.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCAN_TIMEOUT_S = 90
SCAN_OPTIONS = ("--framework", "cloudformation", "--skip-download", "--output", "json")
"""``--skip-download``: no guidelines or policies fetched, so the scan is this version's checks."""


def _checkov() -> str | None:
    configured = os.environ.get("TPF_CHECKOV")
    if configured:
        return configured
    own = ROOT / ".venv-checkov" / "bin" / "checkov"
    return str(own) if own.exists() else shutil.which("checkov")


def _waivers(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(checkov's resource name, check id) -> the reason the template gives."""
    return {
        (f"{resource['Type']}.{id_}", skip["id"]): skip.get("comment", "")
        for id_, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    settings = Settings(stack="scan", profile="default")
    return stack_template(settings, pipelines={"org.example.orders": "examples.orders:orders"})


@pytest.fixture(scope="module")
def report(template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    checkov = _checkov()
    require(None if checkov else "checkov is not installed: run `make scan` (or set TPF_CHECKOV)")
    assert checkov is not None
    path = tmp_path_factory.mktemp("scan") / "stack.json"
    path.write_text(render(template))
    run = subprocess.run(
        [checkov, "-f", str(path), *SCAN_OPTIONS],
        capture_output=True,
        text=True,
        timeout=SCAN_TIMEOUT_S,
        check=False,
    )
    # checkov exits 1 when a check failed; its report says which, so read it either way.
    assert run.returncode in (0, 1), run.stderr[-2000:]
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def test_checkov_fails_no_check_and_passes_some(report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


def test_every_skipped_check_is_waived_in_the_template_with_its_reason(
    report: dict[str, Any], template: dict[str, Any]
) -> None:
    waivers = _waivers(template)
    # Equal, not a subset: a waiver for a check that no longer runs on its resource is stale.
    skipped = {
        (c["resource"], c["check_id"]): c["check_result"].get("suppress_comment", "")
        for c in report["results"]["skipped_checks"]
    }
    assert skipped == waivers
    for (resource, check), reason in waivers.items():
        assert len(reason.split()) >= 8, f"{check} on {resource} needs a reason, not {reason!r}"
