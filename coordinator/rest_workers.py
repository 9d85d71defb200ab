"""The coordinator's side of the REST worker transport (:mod:`worker.rest`).

Each call is signed in headers (``tpf.signing``, REST) and runs through the invocation
runtime's transport entry point, so its duration and failure category are recorded like any
remote call. An answer is believed only when it is signed and answers what was asked::

    sign ─ POST (runtime: transport "rest") ─ status ─ decode ─ verify signature ─ same command?

Errors, at one place each:

- ``CommandRefused``: the worker refused to run the command (409: not hosted, past its
  deadline). The worker answered as designed, so the transport call itself counts as a success.
  A refusal is not signed: it commits nothing, and forging one on the path does no more harm
  than dropping the request would.
- ``SignatureRejected``: an answer unsigned, tampered, signed for another channel, or a signed
  result for another command (a replayed answer). Category ``auth``.
- ``MalformedMessage``: an answer that is no envelope of this protocol. Category ``malformed``.
- httpx errors pass through as they are: a connection refused, a timeout, a non-2xx status
  (``HTTPStatusError``: 401 ``auth``, 5xx ``unavailable``); the runtime categorizes them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from tpf.clock import now_ms
from tpf.errors import TpfError
from tpf.rest import (
    CAPABILITIES_CHANNEL,
    CAPABILITIES_PATH,
    COMMANDS_CHANNEL,
    EXECUTE_PATH,
    RESULTS_CHANNEL,
    decode_capabilities,
)
from tpf.runtime import InvocationRuntime
from tpf.signing import REST_WINDOW_MS, SignatureRejected, Signer
from tpf.wire import MalformedMessage, TransitionCommand, TransitionResult, decode

PROTOCOL = "rest"
DEFAULT_TIMEOUT_S = 90.0
"""Longer than a transition may run without a heartbeat (60 s by default), so the coordinator's
deadline, not this timeout, decides when a slow transition is retried."""


class CommandRefused(TpfError):
    """The worker refused to run the command and ran nothing; ``reason`` says why
    (``other_release``, ``other_contract``, ``unknown_pipeline``, ``past_deadline``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"command refused by the worker: {reason}")
        self.reason = reason


class RestWorkerClient:
    """Calls REST workers at their endpoints (``http://host:port``, a path prefix allowed)."""

    def __init__(
        self,
        signer: Signer,
        runtime: InvocationRuntime,
        client: httpx.AsyncClient | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.signer, self.runtime, self.timeout_s = signer, runtime, timeout_s
        self._owned = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._clock = clock

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> RestWorkerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def execute(self, endpoint: str, command: TransitionCommand) -> TransitionResult:
        """Run ``command`` on the worker at ``endpoint``; its verified, signed result."""
        if command.signature is None:
            # The dispatcher signs what it sends; sign a bare command until its deadline, so
            # the worker checks the same envelope signature on either transport.
            ttl_ms = max(command.deadline_epoch_ms - self._clock(), 0) + REST_WINDOW_MS
            command = self.signer.sign(
                command, channel=COMMANDS_CHANNEL, now_ms=self._clock(), ttl_ms=ttl_ms
            )
        body = command.to_json().encode()
        url = _url(endpoint, EXECUTE_PATH)

        async def call() -> TransitionResult | CommandRefused:
            headers = self.signer.sign_request("POST", url.path, body, now_ms=self._clock())
            response = await self._client.post(
                url,
                content=body,
                headers={**headers, "Content-Type": "application/json"},
                timeout=self.timeout_s,
            )
            if response.status_code == 409:
                return CommandRefused(_refusal_reason(response))
            response.raise_for_status()
            return self._answer(command, response.content)

        outcome = await self.runtime.invoke_transport(PROTOCOL, endpoint, call)
        if isinstance(outcome, CommandRefused):
            raise outcome
        return outcome

    async def capabilities(self, endpoint: str) -> dict[str, Any]:
        """What the worker at ``endpoint`` hosts (camelCase), once its signature verifies."""
        url = _url(endpoint, CAPABILITIES_PATH)

        async def call() -> dict[str, Any]:
            headers = self.signer.sign_request("GET", url.path, b"", now_ms=self._clock())
            response = await self._client.get(url, headers=headers, timeout=self.timeout_s)
            response.raise_for_status()
            answer = decode_capabilities(response.content)
            self.signer.verify(answer, channel=CAPABILITIES_CHANNEL, now_ms=self._clock())
            found: dict[str, Any] = answer.model_dump(
                mode="json", by_alias=True, exclude_none=True, exclude={"signature"}
            )
            return found

        return await self.runtime.invoke_transport(PROTOCOL, endpoint, call)

    def _answer(self, command: TransitionCommand, raw: bytes) -> TransitionResult:
        result = decode(raw)
        if not isinstance(result, TransitionResult):
            raise MalformedMessage(f"a {result.kind} envelope in answer to a command")
        self.signer.verify(result, channel=RESULTS_CHANNEL, now_ms=self._clock())
        asked = (
            command.tenant_id,
            command.execution_id,
            command.transition_key,
            command.execution_version,
        )
        answered = (
            result.tenant_id,
            result.execution_id,
            result.transition_key,
            result.execution_version,
        )
        if answered != asked:
            # Signed by a worker, but for another command: a replayed answer, never committed.
            raise SignatureRejected("result answers another command")
        return result


def _url(endpoint: str, path: str) -> httpx.URL:
    return httpx.URL(endpoint.rstrip("/") + path)


def _refusal_reason(response: httpx.Response) -> str:
    try:
        reason = response.json().get("reason")
    except (ValueError, AttributeError):
        reason = None
    return reason if isinstance(reason, str) and reason else "unknown"
