"""The package as a user installs it: a built wheel (not this checkout) in a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = (".git", ".venv", ".venv-*", ".stack", ".chaos", "build", "*.egg-info")
NOT_SOURCE += (".*_cache", ".hypothesis")


@pytest.mark.timeout(900)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    # A copy of the source: setuptools builds in the tree it is given.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # uv builds the wheel with the project's own backend and compiles it, as pip does, with a
    # fraction of pip's CPU.
    uv = Path(sys.executable).parent / "uv"
    python = venv / "bin" / "python"
    install = ("pip", "install", "--quiet", "--compile-bytecode", "--python", str(python))
    installed = subprocess.run(
        [str(uv), *install, "--", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    # Away from the checkout: everything the demo needs must have come with the wheel.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPF_", "AWS_ENDPOINT"))}
    env.update({"TPF_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": ""})
    env["TPF_OWNER_PID"] = str(os.getpid())
    demo = subprocess.run(
        [str(venv / "bin" / "tpf"), "demo", "--executions", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert demo.stdout.count("SUCCEEDED") >= 2
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert (site / "tpfctl").is_dir() and not (site / "tests").exists()
