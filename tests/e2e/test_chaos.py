"""The crash harness, small, as CI runs it: it must pass, and it must have exercised recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_crash_run_loses_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(ROOT / "scripts" / "chaos"),
            *("--executions", "60", "--kills", "10", "--freezes", "2"),
            *("--duplicate-rate", "0.05", "--timeout", "240", "--workdir", str(tmp_path)),
        ],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, report["violations"]
    assert report["violations"] == []
    assert (report["executions"], report["kills"], report["freezes"]) == (60, 10, 2)
    assert report["lost"] == report["wrong_status"] == report["duplicated_effects"] == 0
    assert report["duplicate_invocations"] + report["deadline_takeovers"] > 0
