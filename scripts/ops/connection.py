"""Which stack, where its services are, and boto3 handles to them.

Explicit variables win (``TPF_STACK``, ``TPF_SUBSTRATE``, ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``); what ``tpf up`` wrote
to its state file (``~/.tpf/<stack>.json``) fills the gaps, so a second terminal needs only
``TPF_STACK`` when the stack is not the default ``tpf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3

from tpf.settings import Settings
from tpf.substrate import client_kwargs, read_state, resolve_endpoints


def load_settings() -> Settings:
    settings = Settings()
    state = read_state(settings) or {}
    gaps: dict[str, Any] = {}
    if settings.endpoint_url is None:
        # `tpf up` records its endpoints as the standard variables: AWS_ENDPOINT_URL_SQS, ...
        for variable, url in state.get("endpoints", {}).items():
            field = variable.removeprefix("AWS_").lower()
            if getattr(settings, field, "absent") is None:
                gaps[field] = url
    if "TPF_SUBSTRATE" not in os.environ and state.get("substrate"):
        gaps["substrate"] = state["substrate"]
    return settings.model_copy(update=gaps)


def resource(settings: Settings, service: str) -> Any:
    """A boto3 resource (DynamoDB: items come back as plain dicts, numbers as Decimal)."""
    kwargs = client_kwargs(settings, service, resolve_endpoints(settings))
    return boto3.session.Session().resource(service, **kwargs)


def client(settings: Settings, service: str) -> Any:
    kwargs = client_kwargs(settings, service, resolve_endpoints(settings))
    return boto3.session.Session().client(service, **kwargs)


def table(settings: Settings, name: str) -> Any:
    """The stack's table of logical ``name`` (physical name ``<stack>-<name>``)."""
    return resource(settings, "dynamodb").Table(settings.resource(name))


def all_items(call: Callable[..., dict[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a ``table.scan`` or ``table.query``, page after page (1 MB per call)."""
    while True:
        page = call(**kwargs)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
