"""Configuration under TPF's own names, beside ours (the table in docs/tpf-compatibility.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.testing import InMemoryCoordinator
from tests.unit.drive import checkpointed, commands, failed, submit
from tpf.records import Status
from tpf.settings import Settings


def test_tpfs_names_set_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TPF_COORDINATOR_PORT": "8082",
        "TPF_PIPELINE_MAX_CONCURRENCY": "25",
        "TPF_WORKER_REQUEST_TIMEOUT": "PT120S",
        "TPF_ORCHESTRATOR_MAX_RETRIES": "0",
        "TPF_ORCHESTRATOR_RETRY_DELAY": "PT1S",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.api_port, settings.worker_concurrency) == (8082, 25)
    assert settings.worker_request_timeout == timedelta(seconds=120)
    override = settings.retry_override("any.pipeline")
    assert override is not None
    assert (override.max_retries, override.retry_delay) == (0, timedelta(seconds=1))


def test_our_names_still_win_and_work_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPF_API_PORT", "9000")
    assert Settings().api_port == 9000
    assert Settings().retry_override("any.pipeline") is None


def test_tpfs_worker_secret_is_the_signing_key_when_ours_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TPF_SIGNING_SECRET", "TPF_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TPF_WORKER_SECRET", "restaurant-transition-worker-secret")
    assert Settings().signing_key == "env:TPF_WORKER_SECRET"
    monkeypatch.setenv("TPF_SIGNING_SECRET", "ours-" + "x" * 32)
    assert Settings().signing_key == "env:TPF_SIGNING_SECRET"


@pytest.mark.parametrize(("max_retries", "failures_to_dlq"), [(0, 1), (3, 4)])
async def test_configured_retries_replace_the_pipelines_own(
    max_retries: int, failures_to_dlq: int
) -> None:
    """``checkpointed`` allows 2 attempts; TPF_ORCHESTRATOR_MAX_RETRIES decides instead."""
    settings = Settings(
        profile="test",
        due_shards=2,
        submit_without_worker=True,
        orchestrator_max_retries=max_retries,
        orchestrator_retry_delay=timedelta(0),
    )
    c = InMemoryCoordinator.create(settings)
    await c.register(checkpointed)
    execution_id = await submit(c, checkpointed.id, {"n": 1})
    for _ in range(failures_to_dlq):
        [command] = await commands(c)
        await c.committer.commit(failed(command), now_ms=command.deadline_epoch_ms - 1)
        await c.sweeper.sweep_once(command.deadline_epoch_ms)  # dispatches a due retry
    record = await c.service.status("acme", execution_id)
    assert (record.status, record.retries_used) == (Status.DLQ, failures_to_dlq)


def test_retries_per_pipeline_override_the_global_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPF_ORCHESTRATOR_MAX_RETRIES", "3")
    monkeypatch.setenv("TPF_PIPELINE_RETRIES", '{"org.example.orders": {"maxRetries": 0}}')
    settings = Settings()
    own = settings.retry_override("org.example.orders")
    other = settings.retry_override("org.example.greeting")
    assert own is not None and other is not None
    assert (own.max_retries, other.max_retries) == (0, 3)


def test_tpfs_worker_port_sets_the_rest_port_of_tpf_worker() -> None:
    import typer.main

    from tpfctl.cli import roles

    worker = typer.main.get_command(roles.app).commands["worker"]  # type: ignore[attr-defined]
    [port] = [p for p in worker.params if p.name == "rest_port"]
    assert port.envvar == "TPF_WORKER_PORT"
