"""The REST worker transport's wire, shared by both ends: the worker serving it
(:mod:`worker.rest`) and the coordinator calling it (:mod:`coordinator.rest_workers`).

Routes, the signing channel of each kind of message, and the capabilities a worker answers with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, ValidationError

from tpf.wire import (
    PROTOCOL,
    TRANSITION_ENCODING,
    HostedPipeline,
    MalformedMessage,
    Signature,
    Wire,
)

EXECUTE_PATH = "/pipeline/worker/transitions/execute"
CAPABILITIES_PATH = "/pipeline/worker/capabilities"
COMMANDS_CHANNEL = "work"
"""Commands carry the signature the dispatcher gave them, whichever transport delivers them."""
RESULTS_CHANNEL = "rest-results"
CAPABILITIES_CHANNEL = "rest-capabilities"


class WorkerCapabilities(Wire):
    """What a REST worker hosts, as its capabilities route answers (signed)."""

    model_config = ConfigDict(extra="allow")
    """Fields a deployment adds (an artifact id, a region) are kept, and signed with the rest."""

    kind: Literal["capabilities"] = "capabilities"
    protocol: int = PROTOCOL
    worker_id: str
    release_version: str
    pipelines: list[HostedPipeline]
    protocols: list[str] = ["rest"]
    payload_encodings: list[str] = [TRANSITION_ENCODING]
    artifact_digest: str | None = None
    signature: Signature | None = None


def decode_capabilities(raw: bytes | str) -> WorkerCapabilities:
    """Parse a capabilities answer; any failure becomes MalformedMessage."""
    try:
        return WorkerCapabilities.model_validate_json(raw)
    except ValidationError as exc:
        raise MalformedMessage(f"not a capabilities answer: {exc.errors()[0]['msg']}") from exc
