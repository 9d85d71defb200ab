"""Where the AWS-shaped services are, and clients that talk to them.

Three substrates share one code path; only endpoints differ:

- ``embedded``: moto's server, owned by a command that owns a stack (``tpf demo``, ``tpf up``,
  test fixtures). Other processes learn its endpoint from ``AWS_ENDPOINT_URL`` or the state file.
- ``localstack``: LocalStack for S3 and SQS, DynamoDB Local for DynamoDB (``localstack/up``).
- ``aws``: the real thing; endpoints come from the SDK's own resolution.

Every client built here reports to the process's request ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aioboto3
import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tpf.accounting import LEDGER, RequestLedger
from tpf.errors import ConfigurationError
from tpf.queues.sqs import flush_deletes
from tpf.settings import Settings

SERVICES = ("dynamodb", "sqs", "s3")
LOCALSTACK_DEFAULTS = {
    "dynamodb": "http://127.0.0.1:8000",
    "sqs": "http://127.0.0.1:4566",
    "s3": "http://127.0.0.1:4566",
}
EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

# Retries, chosen deliberately: "standard" retries throttling, 5xx and dropped connections with
# jittered exponential backoff, 5 attempts in all, and spends a per-client retry budget (a token
# bucket) so an outage does not multiply its own load. Not "adaptive": its client-side rate
# limiter would slow every table of a process for one throttled partition. Past the SDK, each
# loop retries its round with backoff (``tpf.loops``) and SQS redelivers what was not settled;
# every failed attempt is counted in ``tpf_substrate_errors_total`` (``tpf.accounting``).
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 5},
    max_pool_connections=64,
    connect_timeout=5,
    read_timeout=60,
)


@dataclass(frozen=True)
class Endpoints:
    """Per-service endpoint URLs; ``None`` means the SDK's default (real AWS)."""

    dynamodb: str | None
    sqs: str | None
    s3: str | None

    def for_service(self, service: str) -> str | None:
        value: str | None = getattr(self, service, None)
        return value

    def as_env(self) -> dict[str, str]:
        """The standard variables that point a child process (or the AWS CLI) here."""
        env = {
            f"AWS_ENDPOINT_URL_{s.upper()}": url for s in SERVICES if (url := self.for_service(s))
        }
        return env


def read_state(settings: Settings) -> dict[str, Any] | None:
    """The state file written by the process that owns the stack, if there is one."""
    try:
        data: dict[str, Any] = json.loads(settings.state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def resolve_endpoints(settings: Settings) -> Endpoints:
    """Explicit variables win; then the substrate's convention. Fails with one clear line."""
    explicit = {
        s: getattr(settings, f"endpoint_url_{s}") or settings.endpoint_url for s in SERVICES
    }
    if all(explicit.values()) or settings.substrate == "aws":
        return Endpoints(**explicit)
    if settings.substrate == "localstack":
        return Endpoints(**{s: explicit[s] or LOCALSTACK_DEFAULTS[s] for s in SERVICES})
    state = read_state(settings)
    if state and state.get("endpoint_url"):
        return Endpoints(**{s: explicit[s] or state["endpoint_url"] for s in SERVICES})
    raise ConfigurationError(
        "no embedded substrate is running for stack "
        f"{settings.stack!r}: start one with `tpf up` (or `tpf demo`), or set AWS_ENDPOINT_URL"
    )


def client_kwargs(settings: Settings, service: str, endpoints: Endpoints) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "region_name": settings.region,
        "endpoint_url": endpoints.for_service(service),
        "config": _CLIENT_CONFIG,
    }
    emulated = settings.substrate != "aws"
    if emulated and not os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs.update(EMULATOR_CREDENTIALS)
    return kwargs


def keep_connections(client: Any, settings: Settings, service: str) -> None:
    """Ask an emulator's SQS to keep the connection open, as AWS does without being asked.

    LocalStack's gateway (hypercorn, the server that binds to loopback only) closes every
    connection after its response unless the request says ``Connection: keep-alive``: each
    SQS request would then open a TCP connection of its own, about a quarter more CPU and wall
    time per request. Set after signing (``before-send``), so the header is not signed. S3 is
    left as the SDK sends it: payloads rarely leave the record, so its requests are few."""
    if settings.substrate != "aws" and service == "sqs":
        client.meta.events.register("before-send.sqs", ask_to_keep_alive)


def ask_to_keep_alive(request: Any, **_: Any) -> None:
    """A botocore event handler: the request asks the server to keep its connection open."""
    request.headers["Connection"] = "keep-alive"


def sync_client(
    settings: Settings,
    service: str,
    *,
    endpoints: Endpoints | None = None,
    ledger: RequestLedger = LEDGER,
) -> Any:
    """A boto3 client for scripts and provisioning (not for the hot path)."""
    endpoints = endpoints or resolve_endpoints(settings)
    kwargs = client_kwargs(settings, service, endpoints)
    if service not in SERVICES:
        kwargs["endpoint_url"] = service_endpoint(settings, endpoints, service)
    client = boto3.session.Session().client(service, **kwargs)
    ledger.attach(client.meta.events)
    keep_connections(client, settings, service)
    return client


@dataclass
class AwsClients:
    """The async clients a role needs, opened once per process."""

    dynamodb: Any
    sqs: Any
    s3: Any
    endpoints: Endpoints
    lambda_: Any = None
    """Reads the event source mappings of Lambda workers (never invokes them)."""


def service_endpoint(settings: Settings, endpoints: Endpoints, service: str) -> str | None:
    """Services outside the LocalStack stack (Lambda, Secrets Manager): an explicit endpoint,
    else moto's server when embedded (it serves every service), else the SDK's own."""
    explicit = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or settings.endpoint_url
    if explicit or settings.substrate != "embedded":
        return explicit
    return endpoints.dynamodb


def lambda_endpoint(settings: Settings, endpoints: Endpoints) -> str | None:
    return service_endpoint(settings, endpoints, "lambda")


@asynccontextmanager
async def open_clients(
    settings: Settings, *, endpoints: Endpoints | None = None, ledger: RequestLedger = LEDGER
) -> AsyncIterator[AwsClients]:
    endpoints = endpoints or resolve_endpoints(settings)
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        opened = {}
        for service in SERVICES:
            client = await stack.enter_async_context(
                session.client(service, **client_kwargs(settings, service, endpoints))
            )
            ledger.attach(client.meta.events)
            keep_connections(client, settings, service)
            opened[service] = client
            if service == "sqs":  # runs before the client closes: nothing is left to it
                stack.push_async_callback(flush_deletes, client)
        # Creating a client sends nothing: it costs a request only where a Lambda worker is.
        kwargs = client_kwargs(settings, "lambda", endpoints)
        kwargs["endpoint_url"] = lambda_endpoint(settings, endpoints)
        lambda_client = await stack.enter_async_context(session.client("lambda", **kwargs))
        yield AwsClients(endpoints=endpoints, lambda_=lambda_client, **opened)


_MISSING_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
    }
)
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ConnectionClosedError,
    ReadTimeoutError,
)


def explain_failure(exc: BaseException) -> ConfigurationError | None:
    """The substrate failure behind ``exc`` (or its causes) as one line a person can act on:
    an endpoint nobody answers on, a resource that does not exist, no credentials. None when
    ``exc`` is something else, which keeps its traceback."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _CONNECTION_ERRORS):
            url = seen.kwargs.get("endpoint_url", "?")
            return ConfigurationError(
                f"cannot reach {url}: is the substrate up? "
                "(`localstack/up`, `tpf up`, or check AWS_ENDPOINT_URL*)"
            )
        if isinstance(seen, NoCredentialsError):
            return ConfigurationError(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        if isinstance(seen, ClientError):
            error = seen.response.get("Error", {})
            if error.get("Code") in _MISSING_CODES:
                return ConfigurationError(
                    f"a resource is missing ({seen.operation_name}: "
                    f"{error.get('Message') or error.get('Code')}): "
                    "create the stack's resources with `tpf infra up`"
                )
        seen = seen.__cause__ or seen.__context__
    return None
