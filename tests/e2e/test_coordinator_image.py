"""The coordinator image's command, run here as the Fargate task would run it.

No container engine is needed: the ``Dockerfile``'s ``CMD`` (exec form) runs as a subprocess of
this checkout, with the environment the template's task definition gives the container, against
a provisioned stack on moto's server whose secrets the environment names by ARN, over HTTP and
over HTTPS with the deployer's certificate. The task is healthy when the task definition's own
health check passes.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra import _coordinator_service as service
from infra._secrets import ADMIN_TOKEN, CONTROL_PLANE_TOKEN, SIGNING_KEY
from infra.resources import describe
from tests.certificates import CertificateFiles, self_signed
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


def _secret_arns(stack: TestStack, values: dict[str, str]) -> dict[str, str]:
    """``values`` stored in Secrets Manager on moto's server: name -> ARN."""
    client = boto3.client(
        "secretsmanager", region_name=stack.settings.region, endpoint_url=stack.endpoints.sqs
    )
    run = uuid.uuid4().hex[:8]  # the stack is the session's; each task makes its own secrets
    made = {
        name: client.create_secret(Name=f"{stack.settings.stack}-{run}-{name}", SecretString=value)
        for name, value in values.items()
    }
    return {name: answer["ARN"] for name, answer in made.items()}


def _stack_secrets(stack: TestStack) -> dict[str, str]:
    """The stack's three secrets as the template makes them: logical id -> ARN."""
    ids = (SIGNING_KEY, CONTROL_PLANE_TOKEN, ADMIN_TOKEN)
    return _secret_arns(stack, {id_: f"{id_}-" + "x" * 32 for id_ in ids})


def _resolved(value: Any, *, region: str, secrets: dict[str, str]) -> str:
    """A task definition value as CloudFormation would give it to the container; ``secrets``
    are the ARNs of the secrets (logical ids) and of the secret parameters it names."""
    if isinstance(value, str):
        return value
    if value == {"Ref": "AWS::Region"}:
        return region
    (name,) = [s for s in secrets if value == {"Fn::Sub": f"secretsmanager:${{{s}}}"}]
    return f"secretsmanager:{secrets[name]}"


def task_environment(
    stack: TestStack, port: int, tls: CertificateFiles | None = None
) -> dict[str, str]:
    """The container's environment from the task definition, pointed at moto's server. The one
    change: the API listens on a free loopback port, not the task's interface and fixed port.
    With ``tls``, the deployer's certificate and key are secrets and the template's parameters."""
    secrets = _stack_secrets(stack)
    entries = service.environment(describe(stack.settings))
    if tls is not None:
        pem = {
            "CoordinatorTlsCertificate": tls.certificate.read_text(),
            "CoordinatorTlsKey": tls.key.read_text(),
        }
        secrets |= _secret_arns(stack, pem)
        # Fn::If [CoordinatorServesHttps, <entry>, AWS::NoValue], the condition holding.
        entries += [e["Fn::If"][1] for e in service.tls_environment()]
    container = {
        e["Name"]: _resolved(e["Value"], region=stack.settings.region, secrets=secrets)
        for e in entries
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


@dataclass(frozen=True)
class Task:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    environment: dict[str, str]
    tls: CertificateFiles | None

    @property
    def ready_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/q/health/ready"

    def ready(self) -> bool:
        assert self.process.poll() is None, f"the coordinator exited:\n{self.output()}"
        trust = ssl.create_default_context(cafile=str(self.tls.certificate)) if self.tls else True
        try:
            return httpx.get(self.ready_url, timeout=2, verify=trust).status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.log.read_text()[-3000:]


@pytest.fixture(params=["http", "https"])
def coordinator_task(
    request: pytest.FixtureRequest, embedded_stack: TestStack, tmp_path: Path
) -> Iterator[Task]:
    port = free_port()
    tls = self_signed(tmp_path) if request.param == "https" else None
    environment = task_environment(embedded_stack, port, tls)
    log = tmp_path / "coordinator.log"
    with log.open("wb") as output:
        # Its own process group, following this one: it cannot outlive the test run.
        process = lifeline.spawn(
            image_command(DOCKERFILE),
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        yield Task(process, port, log, environment, tls)
    finally:
        lifeline.stop_group(process, grace=STOP_GRACE_S)


def test_the_image_runs_the_coordinator_in_exec_form() -> None:
    command = image_command(DOCKERFILE)
    assert command == ["tpf", "coordinator"]


def test_the_images_command_serves_a_healthy_coordinator_and_stops_cleanly(
    coordinator_task: Task,
) -> None:
    task = coordinator_task

    wait_until(task.ready, timeout=90, interval=0.25)

    # The task definition's own health check, aimed at this port, in the task's environment.
    check = [
        part.replace(f"127.0.0.1:{service.API_PORT}", f"127.0.0.1:{task.port}")
        for part in service.HEALTH_CHECK[1:]
    ]
    check[0] = sys.executable if check[0] == "python" else check[0]
    healthy = subprocess.run(check, env=task.environment, timeout=30, check=False)
    assert healthy.returncode == 0
    # ECS stops a task with SIGTERM: the replica drains and exits 0 before the stop timeout.
    task.process.send_signal(signal.SIGTERM)
    assert task.process.wait(timeout=service.STOP_TIMEOUT_S) == 0, task.output()
