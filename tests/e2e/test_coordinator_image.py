"""The coordinator image's command, run here as the Fargate task would run it.

No container engine is needed: the ``Dockerfile``'s ``CMD`` (exec form) runs as a subprocess of
this checkout, with the environment the template's task definition gives the container, against
a provisioned stack on moto's server whose secrets the environment names by ARN. The task is
healthy when the task definition's own health check passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra import _coordinator_service as service
from infra._secrets import ADMIN_TOKEN, CONTROL_PLANE_TOKEN, SIGNING_KEY
from infra.resources import describe
from tests.substrates import TestStack
from tests.waiting import wait_until
from tpfctl import lifeline
from tpfctl.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
STOP_GRACE_S = 30.0


def image_command(dockerfile: Path) -> list[str]:
    """The final stage's ENTRYPOINT and CMD, which must be in exec form (JSON arrays)."""
    lines = dockerfile.read_text().splitlines()
    stage = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    found: dict[str, list[str]] = {"ENTRYPOINT": [], "CMD": []}
    for line in lines[stage:]:
        instruction, _, argument = line.partition(" ")
        if instruction.upper() in found:
            parsed = json.loads(argument)
            assert isinstance(parsed, list), f"{instruction} is not in exec form: {line}"
            found[instruction.upper()] = parsed
    return found["ENTRYPOINT"] + found["CMD"]


def _secrets(stack: TestStack) -> dict[str, str]:
    """The stack's three secrets as the template makes them: logical id -> ARN."""
    client = boto3.client(
        "secretsmanager", region_name=stack.settings.region, endpoint_url=stack.endpoints.sqs
    )
    arns = {}
    for logical_id in (SIGNING_KEY, CONTROL_PLANE_TOKEN, ADMIN_TOKEN):
        made = client.create_secret(
            Name=f"{stack.settings.stack}-{logical_id}", SecretString=f"{logical_id}-" + "x" * 32
        )
        arns[logical_id] = made["ARN"]
    return arns


def _resolved(value: Any, *, region: str, secrets: dict[str, str]) -> str:
    """A task definition value as CloudFormation would give it to the container."""
    if isinstance(value, str):
        return value
    if value == {"Ref": "AWS::Region"}:
        return region
    (logical_id,) = [s for s in secrets if value == {"Fn::Sub": f"secretsmanager:${{{s}}}"}]
    return f"secretsmanager:{secrets[logical_id]}"


def task_environment(stack: TestStack, port: int) -> dict[str, str]:
    """The container's environment from the task definition, pointed at moto's server. The one
    change: the API listens on a free loopback port, not the task's interface and fixed port."""
    secrets = _secrets(stack)
    description = describe(stack.settings)
    container = {
        e["Name"]: _resolved(e["Value"], region=stack.settings.region, secrets=secrets)
        for e in service.environment(description)
    }
    container |= {"TPF_API_HOST": "127.0.0.1", "TPF_API_PORT": str(port)}
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("TPF_", "AWS_ENDPOINT_URL"))
    }
    return {
        **inherited,
        **container,
        "AWS_ENDPOINT_URL": str(stack.endpoints.sqs),
        # The image installs the project; here the checkout is the project.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def coordinator_task(
    embedded_stack: TestStack, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log = tmp_path / "coordinator.log"
    with log.open("wb") as output:
        # Its own process group, following this one: it cannot outlive the test run.
        process = lifeline.spawn(
            image_command(DOCKERFILE),
            env=task_environment(embedded_stack, port),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        yield process, port, log
    finally:
        lifeline.stop_group(process, grace=STOP_GRACE_S)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, f"the coordinator exited:\n{log.read_text()[-3000:]}"
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_image_runs_the_coordinator_in_exec_form() -> None:
    command = image_command(DOCKERFILE)
    assert command == ["tpf", "coordinator"]


def test_the_images_command_serves_a_healthy_coordinator_and_stops_cleanly(
    coordinator_task: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log = coordinator_task
    ready = f"http://127.0.0.1:{port}/q/health/ready"

    wait_until(lambda: _ready(ready, process, log), timeout=90, interval=0.25)

    # The task definition's own health check, aimed at this port.
    check = [
        part.replace(f"127.0.0.1:{service.API_PORT}", f"127.0.0.1:{port}")
        for part in service.HEALTH_CHECK[1:]
    ]
    check[0] = sys.executable if check[0] == "python" else check[0]
    assert subprocess.run(check, timeout=30, check=False).returncode == 0
    # ECS stops a task with SIGTERM: the replica drains and exits 0 before the stop timeout.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=service.STOP_TIMEOUT_S) == 0, log.read_text()[-3000:]
