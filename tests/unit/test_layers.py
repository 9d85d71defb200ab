"""The layers hold: what a pipeline author imports pulls in no role, no shell and no AWS SDK, and
the import contracts fail on a wrong import (the linter itself is run by ``make lint`` in CI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tpf", "tpfctl", "coordinator", "worker", "infra", "examples")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_authors_import_loads_no_role_shell_sdk_or_web_framework() -> None:
    # A fresh interpreter: imports done through importlib escape the linter, not sys.modules.
    probe = (
        "import json, sys; import tpf.pipeline; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    forbidden = {"coordinator", "worker", "infra", "tpfctl", "botocore", "boto3", "fastapi"}
    assert loaded & forbidden == set()
    assert "tpf" in loaded and "pydantic" in loaded  # the probe did import something


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and their contracts, for breaking on purpose."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold_on_the_code_as_it_is(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("worker/fence/port.py", "import coordinator.store", "Layers"),
        ("coordinator/sweeper.py", "import worker.command", "Layers"),
        ("tpf/pipeline.py", "import tpfctl.fleet", "Layers"),
        ("infra/resources.py", "import coordinator.store", "Layers"),
        ("coordinator/sweeper.py", "import botocore.exceptions", "AWS SDKs"),
        ("examples/orders.py", "import coordinator.store", "Pipelines import only"),
    ],
)
def test_a_wrong_import_breaks_a_contract(
    tree: Path, module: str, wrong_import: str, contract: str
) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # on purpose\n")
    done = lint_imports(tree)
    assert done.returncode != 0, done.stdout
    broken = done.stdout[done.stdout.index("Broken contracts") :]
    assert contract in broken, done.stdout
