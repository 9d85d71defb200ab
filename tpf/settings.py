"""Settings shared by every role, read from ``TPF_*`` variables and the standard AWS ones.

Timings come from a *profile*: ``default`` for production, ``test`` for suites and crash runs
where waiting out a 30 s visibility timeout would make recovery tests slow.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from tpf.event_loop import EventLoopChoice

Substrate = Literal["embedded", "localstack", "aws"]
ProfileName = Literal["default", "test"]


class Timings(BaseModel):
    """How long things may take before the framework assumes they died."""

    model_config = ConfigDict(frozen=True)

    visibility_timeout: timedelta
    """SQS visibility of a command; a worker extends it while the transition runs."""
    transition_timeout: timedelta
    """Time a transition may run without a heartbeat before the coordinator retries it."""
    queue_allowance: timedelta
    """Time a command may sit in the work queue; added to the transition deadline on dispatch."""
    heartbeat_interval: timedelta
    sweep_interval: timedelta
    retry_base: timedelta
    retry_cap: timedelta
    long_poll: timedelta
    """SQS long-poll wait; short in tests so shutdowns are prompt."""
    shutdown_grace: timedelta
    await_stall: timedelta
    """An await unit with requests out and no answer for this long has them sent again."""
    worker_stale: timedelta
    """A worker silent this long is STALE; it reports its presence every heartbeat interval."""


PROFILES: dict[ProfileName, Timings] = {
    "default": Timings(
        visibility_timeout=timedelta(seconds=60),
        transition_timeout=timedelta(seconds=60),
        queue_allowance=timedelta(seconds=300),
        heartbeat_interval=timedelta(seconds=15),
        sweep_interval=timedelta(seconds=5),
        retry_base=timedelta(seconds=1),
        retry_cap=timedelta(minutes=15),
        long_poll=timedelta(seconds=20),
        shutdown_grace=timedelta(seconds=30),
        await_stall=timedelta(minutes=10),
        worker_stale=timedelta(seconds=60),
    ),
    "test": Timings(
        visibility_timeout=timedelta(seconds=5),
        transition_timeout=timedelta(seconds=3),
        queue_allowance=timedelta(seconds=5),
        heartbeat_interval=timedelta(seconds=1),
        sweep_interval=timedelta(milliseconds=500),
        retry_base=timedelta(milliseconds=50),
        retry_cap=timedelta(seconds=2),
        long_poll=timedelta(seconds=1),
        shutdown_grace=timedelta(seconds=5),
        await_stall=timedelta(seconds=5),
        worker_stale=timedelta(seconds=15),
    ),
}


def _aws(name: str) -> AliasChoices:
    """Accept the unprefixed standard AWS variable name for a field."""
    return AliasChoices(name, name.lower())


_DEFAULT_KEY = "env:TPF_SIGNING_SECRET"


class RetryOverride(BaseModel):
    """Retry settings a deployment imposes on a pipeline, in TPF's terms."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    max_retries: int | None = Field(default=None, ge=0, le=100)
    retry_delay: timedelta | None = Field(default=None, ge=timedelta(0))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TPF_", extra="ignore", populate_by_name=True)

    stack: str = Field(default="tpf", pattern=r"^[a-z][a-z0-9-]{1,30}$")
    """Prefix of every resource name, so two stacks can share one account or emulator."""
    substrate: Substrate = "embedded"
    profile: ProfileName = "default"
    due_shards: int = Field(default=8, ge=1, le=256)
    """Shards of the sparse due-work index; more shards spread a busy sweep over partitions."""
    state_dir: Path = Path.home() / ".tpf"
    """Where `tpf up` records the endpoint and tokens of the stack it owns."""

    signing_key: str = _DEFAULT_KEY
    """Secret reference (``env:NAME``, ``file:PATH`` or ``secretsmanager:ARN-or-name``, see
    ``tpf.secret_references``) of the HMAC key for commands and results."""
    signing_key_previous: str | None = None
    """The key being rotated out; still accepted when verifying."""
    control_plane_token: SecretStr | None = None
    """Bearer token of the control-plane API, or a ``secretsmanager:`` reference to it."""
    admin_token: SecretStr | None = None
    """Bearer token of the admin API, or a ``secretsmanager:`` reference to it."""
    tenant_tokens: dict[str, frozenset[str]] = Field(default_factory=dict, repr=False)
    """Bearer tokens scoped to tenants, as JSON ``{"<token>": ["acme", "globex"]}``: each sees
    and acts on its tenants only, on the API and in the console; listing the control-plane or
    admin token narrows it too (``coordinator.access``)."""
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    """How long a console sign-in lasts; the operator signs in again after."""
    api_host: str = "127.0.0.1"
    api_port: int = Field(
        default=8081,
        validation_alias=AliasChoices("TPF_API_PORT", "TPF_COORDINATOR_PORT", "api_port"),
    )
    tls_certificate: str | None = None
    """Secret reference (``file:``, ``env:`` or ``secretsmanager:``) of the PEM certificate chain
    the coordinator's API serves HTTPS with, for a deployment without a load balancer in front;
    ``tls_key`` names its private key, and one without the other refuses to start."""
    tls_key: str | None = None
    """Secret reference of the PEM private key of ``tls_certificate``."""
    tenant_submit_rate: float = Field(default=1000.0, ge=0)
    """Submissions per second one tenant may make on one replica (429 beyond); 0 turns it off."""
    tenant_submit_burst: int = Field(default=2000, ge=1)
    """Submissions one tenant may make at once before the rate applies."""
    event_loop: EventLoopChoice = "auto"
    """The event loop of a long-running role (``tpf.event_loop``): ``auto`` runs on uvloop where
    it is installed, ``asyncio`` on the standard library's loop."""
    startup_wait_s: float = Field(default=60.0, ge=0, le=3600)
    """How long a starting role keeps trying a substrate it cannot reach (an outage, a restart)
    before it gives up with one line; a missing resource or credential gives up at once."""
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Request bodies over this many bytes are answered 413 before any route reads them."""
    release: str = Field(
        default="1.0.0", pattern=r"^(?:[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}|sha256:[0-9a-f]{64})$"
    )
    """The release version a worker runs (``tpf worker --release`` overrides it)."""
    submit_without_worker: bool = False
    """Accept submissions while no healthy worker of the pinned release exists (they wait in
    the release's queue); by default such a submission is refused with 503."""
    require_remote_worker: bool = False
    """Refuse one-process mode, so a separated deployment cannot silently run steps in-process."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """A worker serves its metrics on ``http://<api_host>:<port>/q/metrics`` (the coordinator
    serves them on its API port)."""
    worker_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        validation_alias=AliasChoices(
            "TPF_WORKER_CONCURRENCY", "TPF_PIPELINE_MAX_CONCURRENCY", "worker_concurrency"
        ),
    )
    """Transitions one worker process runs at once."""
    shutdown_grace_s: float | None = Field(default=None, ge=0, le=900)
    """Seconds a stopping process gets to finish in-flight work; the profile's when unset."""
    ingest_pipeline: str = "org.pipelineframework.csvpayments"
    """The pipeline each object uploaded to the inbox bucket starts."""
    ingest_tenant: str = "default"
    """The tenant those executions belong to."""
    await_unit_in_flight: int = Field(default=200, ge=1, le=10_000)
    """Await requests of one unit out at once (admission); the rest go as answers come in."""
    await_tenant_in_flight: int = Field(default=2_000, ge=1, le=1_000_000)
    """Await requests of one tenant out at once, across all its units."""
    history: bool = True
    """Append every state change to the history table (1 WRU each); operator actions always are."""
    orchestrator_max_retries: int | None = Field(default=None, ge=0, le=100)
    """TPF's name: retries after the first failed attempt, for every pipeline (its own policy
    when unset); ``pipeline_retries`` overrides it per pipeline."""
    orchestrator_retry_delay: timedelta | None = Field(default=None, ge=timedelta(0))
    """TPF's name: the first retry's backoff (ISO-8601, ``PT1S``), doubling after."""
    pipeline_retries: dict[str, RetryOverride] = Field(default_factory=dict)
    """Per pipeline id, ``{"maxRetries": 0, "retryDelay": "PT1S"}`` (JSON)."""
    worker_request_timeout: timedelta = Field(
        default=timedelta(seconds=30), gt=timedelta(0), le=timedelta(minutes=15)
    )
    """TPF's name: how long the coordinator waits for a REST worker's answer."""
    provider_auth: Literal["enforce", "warn"] = "enforce"
    """Completions on the provider lane (the await-completions queue) must echo their request's
    signed resume token: ``enforce`` refuses one without, ``warn`` records it and logs (for a
    rollout while providers learn to echo it)."""
    provider_keys: dict[str, str] = Field(default_factory=dict)
    """Optional, on top of the resume token: ``{"<provider>": "<secret reference>"}`` (JSON;
    ``env:``, ``file:`` or ``secretsmanager:``). When set, every completion on the provider lane
    must be signed with one of these keys (``tpf.signing.ProviderKeys``); ``provider_auth``
    applies to a missing or wrong signature as to a missing token."""

    ledger_file: Path | None = None
    """Where a role process writes its request ledger (JSON) when it exits."""

    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("TPF_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    endpoint_url: str | None = Field(default=None, validation_alias=_aws("AWS_ENDPOINT_URL"))
    endpoint_url_dynamodb: str | None = Field(
        default=None, validation_alias=_aws("AWS_ENDPOINT_URL_DYNAMODB")
    )
    endpoint_url_sqs: str | None = Field(
        default=None, validation_alias=_aws("AWS_ENDPOINT_URL_SQS")
    )
    endpoint_url_s3: str | None = Field(default=None, validation_alias=_aws("AWS_ENDPOINT_URL_S3"))

    @model_validator(mode="after")
    def _tpf_worker_secret(self) -> Settings:
        """TPF's scripts give the HMAC key as ``TPF_WORKER_SECRET``: used when ours is unset."""
        unset = "TPF_SIGNING_SECRET" not in os.environ and "TPF_SIGNING_KEY" not in os.environ
        if unset and self.signing_key == _DEFAULT_KEY and os.environ.get("TPF_WORKER_SECRET"):
            object.__setattr__(self, "signing_key", "env:TPF_WORKER_SECRET")
        return self

    def retry_override(self, pipeline_id: str) -> RetryOverride | None:
        """What configuration imposes on ``pipeline_id``'s retries, or None."""
        own = self.pipeline_retries.get(pipeline_id)
        if own is not None:
            return own
        if self.orchestrator_max_retries is None and self.orchestrator_retry_delay is None:
            return None
        return RetryOverride(
            max_retries=self.orchestrator_max_retries, retry_delay=self.orchestrator_retry_delay
        )

    @property
    def timings(self) -> Timings:
        timings = PROFILES[self.profile]
        if self.shutdown_grace_s is not None:
            grace = timedelta(seconds=self.shutdown_grace_s)
            timings = timings.model_copy(update={"shutdown_grace": grace})
        return timings

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.stack}.json"

    def resource(self, name: str) -> str:
        """The physical name of a logical resource in this stack."""
        return f"{self.stack}-{name}"


def explain_invalid(exc: BaseException) -> str | None:
    """A settings validation error as one line naming the variable to fix; None for others."""
    if not isinstance(exc, ValidationError) or exc.title != Settings.__name__:
        return None
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        problems.append(f"TPF_{field.upper()}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)
