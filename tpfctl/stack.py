"""Owning a stack: the substrate, its resources, registered pipelines and a fleet of processes.

Only the commands that own a stack use this (``tpf demo``, ``tpf up``, end-to-end tests, the
crash harness). The owning process is never killed during a run: it holds the embedded
substrate and hands its endpoint, tokens and signing secret to the processes it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infra.provision import provision_release
from tpf.clock import now_ms
from tpf.loading import load_pipeline
from tpf.pipeline import Pipeline
from tpf.registry import Registry, register_pipeline
from tpf.registry.dynamodb import DynamoRegistryTable
from tpf.settings import Settings
from tpf.signing import new_secret
from tpf.substrate import Endpoints, open_clients, resolve_endpoints
from tpfctl.embedded import EmbeddedSubstrate
from tpfctl.fleet import Crash, Fleet
from tpfctl.provisioning import bring_up

DEFAULT_PIPELINES = (
    "examples.orders:orders",
    "examples.restaurant_approval:restaurant_approval",
    "examples.csv_payments.pipeline:csv_payments",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class StackSpec:
    substrate: str = "embedded"
    stack: str = "tpf"
    profile: str = "default"
    coordinators: int = 1
    workers: int = 2
    pipelines: tuple[str, ...] = DEFAULT_PIPELINES
    release: str = "1.0.0"
    api_port: int | None = None
    control_plane_token: str | None = None
    admin_token: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    provider_mock: tuple[str, ...] | None = None
    """Arguments of a ``tpf provider-mock`` to run in the fleet; None runs none."""
    endpoints: dict[str, str] = field(default_factory=dict)
    """Where a service really is when not where the substrate puts it (service → URL)."""
    worker_env: dict[str, str] = field(default_factory=dict)
    """Variables of the workers only (the upgrade test points them at an earlier release's code)."""
    register: bool = True
    """Register and activate ``release`` of ``pipelines``; off when the stack already has it."""


@dataclass
class OwnedStack:
    spec: StackSpec
    settings: Settings
    endpoints: Endpoints
    env: dict[str, str]
    api_urls: list[str]
    fleet: Fleet
    embedded: EmbeddedSubstrate | None

    @property
    def api_url(self) -> str:
        """The first coordinator's API; every replica serves the same data."""
        return self.api_urls[0]

    @property
    def control_plane_token(self) -> str:
        return self.env["TPF_CONTROL_PLANE_TOKEN"]

    @property
    def admin_token(self) -> str:
        return self.env["TPF_ADMIN_TOKEN"]

    def state(self) -> dict[str, object]:
        return {
            "stack": self.settings.stack,
            "substrate": self.settings.substrate,
            "endpoint_url": self.endpoints.dynamodb if self.embedded else None,
            "endpoints": self.endpoints.as_env(),
            "api_url": self.api_url,
            "control_plane_token": self.control_plane_token,
            "admin_token": self.admin_token,
            "owner_pid": os.getpid(),
        }

    def write_state(self) -> Path:
        """Let other `tpf` commands (another terminal) find this stack; readable by us only.
        The signing key goes to a file of its own, which the state file names by reference."""
        path = self.settings.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        key = path.with_suffix(".key")
        _private_write(key, self.env["TPF_SIGNING_SECRET"])
        _private_write(path, json.dumps({**self.state(), "signing_key": f"file:{key}"}, indent=2))
        return path


def _private_write(path: Path, text: str) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


async def register_all(settings: Settings, pipelines: list[Pipeline], release: str) -> None:
    """Register and activate ``release`` of each pipeline, its work queue created first."""
    for pipeline in pipelines:
        await asyncio.to_thread(provision_release, settings, (pipeline.id, release))
    async with open_clients(settings) as aws:
        registry = Registry(DynamoRegistryTable(aws.dynamodb, settings.resource("registry")))
        for pipeline in pipelines:
            await register_pipeline(registry, pipeline, release, now_ms=now_ms())


def wait_for_workers(
    stack: OwnedStack, pipeline_ids: list[str], release: str, *, timeout: float = 120.0
) -> None:
    """Until every pipeline has a healthy worker of ``release``: before that, submissions
    are refused with 503 (admission)."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}

    def healthy(response: httpx.Response) -> bool:
        return any(
            w["state"] == "HEALTHY" and w["releaseVersion"] == release for w in response.json()
        )

    for pipeline_id in pipeline_ids:
        url = f"{stack.api_url}/tpf/admin/tenants/default/pipelines/{pipeline_id}/workers"
        stack.fleet.wait_ready(url, timeout=timeout, headers=headers, until=healthy)


@contextlib.contextmanager
def owned_stack(
    spec: StackSpec,
    *,
    workdir: Path | None = None,
    on_crash: Callable[[Crash], None] | None = None,
    route: Callable[[Endpoints], dict[str, str]] | None = None,
    prepare: Callable[[Settings, dict[str, str]], None] | None = None,
) -> Iterator[OwnedStack]:
    """Start everything; on exit stop the fleet, then the substrate. The fleet restarts a
    member that crashes, and calls ``on_crash`` when it does. ``route`` may put something
    between the members and the substrate: given where the services are, it returns the
    members' endpoint variables (the crash harness's fault proxy). ``prepare`` runs on the
    started substrate before provisioning, given the settings and the members' environment
    (the upgrade test restores an earlier main's stack there)."""
    embedded = EmbeddedSubstrate.start() if spec.substrate == "embedded" else None
    try:
        env = {
            "TPF_STACK": spec.stack,
            "TPF_SUBSTRATE": spec.substrate,
            "TPF_PROFILE": spec.profile,
            "TPF_SIGNING_SECRET": new_secret(),
            "TPF_SIGNING_KEY": "env:TPF_SIGNING_SECRET",
            "TPF_CONTROL_PLANE_TOKEN": spec.control_plane_token or new_secret(),
            "TPF_ADMIN_TOKEN": spec.admin_token or new_secret(),
            "TPF_API_PORT": str(spec.api_port or free_port()),
            **spec.extra_env,
        }
        if embedded is not None:
            env["AWS_ENDPOINT_URL"] = embedded.endpoint_url
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if spec.substrate != "aws":
                env.setdefault(name, os.environ.get(name, "test"))
        for service, url in spec.endpoints.items():
            env[f"AWS_ENDPOINT_URL_{service.upper()}"] = url
        settings = Settings(
            stack=spec.stack,
            substrate=spec.substrate,  # type: ignore[arg-type]
            profile=spec.profile,  # type: ignore[arg-type]
            endpoint_url=env.get("AWS_ENDPOINT_URL"),
        ).model_copy(update={f"endpoint_url_{s}": url for s, url in spec.endpoints.items()})
        endpoints = resolve_endpoints(settings)
        if prepare is not None:
            prepare(settings, env)
        bring_up(settings, endpoints=endpoints)
        pipelines = [load_pipeline(p) for p in spec.pipelines]
        if spec.register:
            asyncio.run(register_all(settings, pipelines, spec.release))

        workdir = workdir or Path(tempfile.mkdtemp(prefix=f"tpf-{spec.stack}-"))
        workdir.mkdir(parents=True, exist_ok=True)
        members_env = {**env, **(route(endpoints) if route else {})}
        fleet = Fleet(env=members_env, workdir=workdir, on_crash=on_crash)
        ports = [env["TPF_API_PORT"]] + [str(free_port()) for _ in range(spec.coordinators - 1)]
        for i, port in enumerate(ports):
            name = "coordinator" if i == 0 else f"coordinator-{i + 1}"
            fleet.add("coordinator", name, env={"TPF_API_PORT": port})
        pipeline_args = [arg for p in spec.pipelines for arg in ("--pipeline", p)]
        for i in range(spec.workers):
            fleet.add(
                "worker",
                f"worker-{i + 1}",
                *pipeline_args,
                "--release",
                spec.release,
                env=spec.worker_env,
            )
        if spec.provider_mock is not None:
            fleet.add("provider-mock", "provider-mock", *spec.provider_mock)
        api_urls = [f"http://127.0.0.1:{port}" for port in ports]
        stack = OwnedStack(spec, settings, endpoints, env, api_urls, fleet, embedded)
        try:
            fleet.start_all()
            for url in api_urls:
                fleet.wait_ready(f"{url}/q/health/ready")
            if spec.workers:
                wait_for_workers(stack, [p.id for p in pipelines], spec.release)
            yield stack
        finally:
            fleet.stop_all(grace=settings.timings.shutdown_grace.total_seconds() + 5)
    finally:
        if embedded is not None:
            embedded.stop()
