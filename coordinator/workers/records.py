"""A worker as the directory knows it: what it registered, and the state derived from it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tpf.registry.worker_items import DRAIN_ATTRIBUTE, WORKER_PREFIX
from tpf.wire import WorkerState

ITEM_TTL = timedelta(days=1)

Kind = Literal["process", "lambda"]
WorkerProtocol = Literal["sqs", "rest", "lambda", "local", "grpc"]
"""How the worker takes commands. ``local`` and ``grpc`` are TPF's names, accepted so TPF's
scripts register unchanged; such a worker counts for admission by its registration and
heartbeats, and its commands go through the release's work queue like any other."""
Health = Literal["HEALTHY", "STALE", "DRAINING"]


class WorkerRegistration(BaseModel):
    """The admin API's register body: TPF's fields, plus ``kind`` and ``functionName`` (ours)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    worker_id: str = Field(pattern=r"^[^/\s]{1,200}$")
    contract_version: str = Field(min_length=1, max_length=200)
    release_version: str = Field(min_length=1, max_length=200)
    kind: Kind = "process"
    protocol: WorkerProtocol | None = None
    """Defaults to ``lambda`` for Lambda workers and ``sqs`` otherwise."""
    endpoint: str | None = Field(default=None, max_length=2000)
    function_name: str | None = Field(default=None, min_length=1, max_length=200)
    artifact_id: str | None = Field(default=None, max_length=200)
    artifact_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")

    @field_validator("artifact_id", "artifact_digest", "endpoint", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        """TPF's scripts send ``""`` for an artifact the release does not have."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="before")
    @classmethod
    def _present(cls, data: Any) -> Any:
        """Make fields that depend on others explicit, so their validators run and a 400 points
        at the camelCase field (defaults would be reported under the Python name)."""
        if not isinstance(data, dict):
            return data
        absent = {
            alias: None
            for name, alias in _DEPENDENT.items()
            if data.get(name) is None and data.get(alias) is None
        }
        return {**data, **absent}

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    # Validators below read fields declared before them, so the 400 points at the field at fault.
    @field_validator("protocol", mode="after")
    @classmethod
    def _protocol_of_kind(
        cls, value: WorkerProtocol | None, info: ValidationInfo
    ) -> WorkerProtocol:
        lambda_kind = info.data.get("kind") == "lambda"
        if value is None:
            return "lambda" if lambda_kind else "sqs"
        if (value == "lambda") != lambda_kind:
            raise ValueError("protocol 'lambda' goes with kind 'lambda', and only with it")
        return value

    @field_validator("endpoint", mode="after")
    @classmethod
    def _endpoint_for_rest(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("protocol") != "rest":
            return value  # free-form, as TPF's (``in-process``); only rest calls it
        if not value:
            raise ValueError("a rest worker needs an endpoint")
        if not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http(s) URL")
        return value

    @field_validator("function_name", mode="after")
    @classmethod
    def _function_for_lambda(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == "lambda" and not value:
            raise ValueError("a lambda worker needs a functionName")
        return value


_DEPENDENT = {"protocol": "protocol", "endpoint": "endpoint", "function_name": "functionName"}


class WorkerRecord(BaseModel):
    """One worker of one pipeline, as the admin API shows it."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    worker_id: str
    pipeline_id: str
    release_version: str
    contract_version: str | None = None
    kind: Kind = "process"
    protocol: WorkerProtocol = "sqs"
    endpoint: str | None = None
    function_name: str | None = None
    artifact_id: str | None = None
    artifact_digest: str | None = None
    reported_state: WorkerState = "RUNNING"
    drain_requested_at_epoch_ms: int | None = None
    registered_at_epoch_ms: int
    last_heartbeat_at_epoch_ms: int | None = None
    state: Health = "STALE"

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> WorkerRecord:
        return cls(
            worker_id=item["sk"].removeprefix(WORKER_PREFIX),
            pipeline_id=item["pk"].removeprefix("pipeline#"),
            release_version=item.get("rv", ""),
            contract_version=item.get("cv"),
            kind=item.get("kd", "process"),
            protocol=item.get("pr", "sqs"),
            endpoint=item.get("ep"),
            function_name=item.get("fn"),
            artifact_id=item.get("ai"),
            artifact_digest=item.get("ad"),
            reported_state=item.get("rs", "RUNNING"),
            drain_requested_at_epoch_ms=item.get(DRAIN_ATTRIBUTE),
            registered_at_epoch_ms=item.get("ra", 0),
            last_heartbeat_at_epoch_ms=item.get("hb"),
        )

    def health(self, *, now_ms: int, stale_after: timedelta, mapping_enabled: bool) -> Health:
        if self.drain_requested_at_epoch_ms is not None or self.reported_state != "RUNNING":
            return "DRAINING"
        if self.kind == "lambda":
            return "HEALTHY" if mapping_enabled else "STALE"
        heartbeat = self.last_heartbeat_at_epoch_ms
        stale_after_ms = stale_after // timedelta(milliseconds=1)
        if heartbeat is None or now_ms - heartbeat > stale_after_ms:
            return "STALE"
        return "HEALTHY"


def _expires_at_s(now_ms: int) -> int:
    return now_ms // 1000 + int(ITEM_TTL.total_seconds())
