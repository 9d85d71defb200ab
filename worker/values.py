"""Values between transitions: the JSON shape, loading an input, encoding an output.

Payload shape between transitions (what the coordinator stores and hands back)
------------------------------------------------------------------------------
The value a transition starts from at step ``k`` is JSON of exactly the input type of step ``k``,
wrapped in a list when that step runs per item:

* ``k == 0``: the pipeline input object;
* a per-item step (inside an expansion): a JSON list of items, in expansion order;
* a collect step: the list of items (its input type is already ``list[Item]``);
* the step after an await: ``{"request": ..., "response": ...}`` (``Awaited``), or a list of
  those in item order when the await was itemized.

A list of items longer than one page is stored as pages and the payload is the index of its
pages instead (``tpf.pages``): items are read and written a page at a time (``worker.items``).

``COMPLETED`` carries the value after step ``stop - 1`` in that same shape: the input of step
``stop``, or the pipeline result when ``stop == len(steps)``. ``WAITING_EXTERNAL`` carries no
output; ``Suspension.requests`` is a JSON list of request documents (one per item when itemized,
else one) and ``continuation`` is None: the coordinator resumes at ``stop`` with ``Awaited`` built
from each request and its response. Payloads whose JSON-escaped text exceeds 32 KiB travel by
claim check (``payloadRef``), so a result message stays inside one 64 KiB SQS billing chunk.
Documents are ``model_dump(mode="json", by_alias=True)``; type ids come from
``tpf.pipeline.type_id`` (``list[...]`` for lists) and are labels only.
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import AsyncIterator
from types import GenericAlias
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from tpf.codec import decode_value
from tpf.errors import InvalidInput
from tpf.pages import PageWriter, is_paged, pages_of
from tpf.payloads import PayloadCorrupt, PayloadMissing, PayloadRef, PayloadStore
from tpf.pipeline import StepKind, StepSpec, type_id
from tpf.runtime import categorize_failure
from tpf.wire import TRANSITION_ENCODING, Failure, Payload, PayloadRefWire, TransitionCommand
from worker.items import Item

MESSAGE_INLINE_LIMIT = 32 * 1024
"""Largest payload (as escaped inside the message) sent inline; larger goes by claim check."""
MAX_ERROR_MESSAGE = 1000
_ENCODINGS = (TRANSITION_ENCODING, "application/json")


class InputRejected(Exception):
    """The transition's input cannot be loaded or validated; carries the Failure to report."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def cap(message: str) -> str:
    """Error messages are stored on the execution record, which must stay small."""
    return (
        message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 3] + "..."
    )


def _rejection(
    spec: StepSpec, code: str, message: str, exc: Exception | None, *, retryable: bool
) -> InputRejected:
    category = categorize_failure(exc) if exc is not None else "malformed"
    failure = Failure(
        category=category,
        error_code=code,
        message=cap(message),
        retryable=retryable,
        step_index=spec.index,
    )
    return InputRejected(failure)


def _rejected(spec: StepSpec, exc: Exception) -> InputRejected:
    """The input of ``spec`` could not be loaded because of ``exc``: why, and whether to retry."""
    if isinstance(exc, PayloadMissing):
        # Retryable: an eventually consistent read can miss a payload written just before.
        return _rejection(spec, "PAYLOAD_MISSING", str(exc), exc, retryable=True)
    if isinstance(exc, PayloadCorrupt):
        return _rejection(spec, "PAYLOAD_CORRUPT", str(exc), exc, retryable=False)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"])
        message = f"input of step {spec.id!r} at /{where}: {first['msg']}"
        return _rejection(spec, "MALFORMED_INPUT", message, exc, retryable=False)
    if isinstance(exc, (InvalidInput, UnicodeDecodeError, ValueError)):
        message = f"input of step {spec.id!r}: {exc}"
        return _rejection(spec, "MALFORMED_INPUT", message, exc, retryable=False)
    # The payload store is down or slow: worth another attempt.
    message = f"{type(exc).__name__}: {exc}"
    return _rejection(spec, "INPUT_UNAVAILABLE", message, exc, retryable=True)


async def load_input(spec: StepSpec, command: TransitionCommand, payloads: PayloadStore) -> Any:
    """The validated value step ``spec`` starts from, or :class:`InputRejected`.

    Items (the input of a per-item or collect step) come as a stream of ``(index, item)``
    read page by page (``tpf.pages``); an item that does not validate rejects the input when
    it is reached.
    """
    source = command.input
    if source.payload_encoding not in _ENCODINGS:
        message = f"unsupported payloadEncoding {source.payload_encoding!r}"
        raise _rejection(spec, "MALFORMED_INPUT", message, None, retryable=False)
    try:
        if source.payload_ref is not None:
            ref = PayloadRef(tier=source.payload_ref.tier, digest=source.payload_ref.digest)
            text = (await payloads.get(command.tenant_id, command.execution_id, ref)).decode()
        elif source.payload is not None:
            text = source.payload
        else:
            raise InvalidInput("the input has neither payload nor payloadRef")
        # decode_value also unwraps TPF's java.util.Map / java.util.List envelopes.
        data = decode_value(source.payload_type_id, text)
        if spec.per_item or spec.kind is StepKind.COLLECT:
            if not isinstance(data, list) and not is_paged(data):
                raise InvalidInput("expected a list of items")
            return _items(spec, command, payloads, data)
        return _adapter(input_type(spec)).validate_python(data)
    except Exception as exc:
        raise _rejected(spec, exc) from exc


async def _items(
    spec: StepSpec, command: TransitionCommand, payloads: PayloadStore, document: Any
) -> AsyncIterator[Item]:
    adapter = _adapter(item_type(spec))
    index = 0
    pages = pages_of(payloads, command.tenant_id, command.execution_id, document)
    try:
        async for page in pages:
            for data in page:
                yield index, adapter.validate_python(data)
                index += 1
    except Exception as exc:
        raise _rejected(spec, exc) from exc


def item_type(spec: StepSpec) -> Any:
    """The model of one item of a per-item or collect step's input."""
    if spec.per_item:
        return spec.input_type
    return typing.get_args(spec.input_type)[0]


def input_type(spec: StepSpec) -> Any:
    """The type of the value step ``spec`` starts from (a list when it runs per item)."""
    return GenericAlias(list, (spec.input_type,)) if spec.per_item else spec.input_type


def output_type_id(spec: StepSpec) -> str:
    """The type id of the value step ``spec`` hands on (a list when it runs per item)."""
    label = type_id(spec.output_type)
    return f"list[{label}]" if spec.per_item else label


@functools.lru_cache(maxsize=512)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


async def to_items_payload(
    payloads: PayloadStore, command: TransitionCommand, payload_type_id: str, items: Any
) -> Payload:
    """A list or stream of items as a payload: the list when it fits a page, else the index of
    its pages. A :class:`worker.items.StepError` met while drawing the items propagates."""
    writer = PageWriter(payloads, command.tenant_id, command.execution_id)
    if isinstance(items, list):
        for value in items:
            await writer.add(to_json(value))
    else:
        async for _, value in items:
            await writer.add(to_json(value))
    return await to_payload(payloads, command, payload_type_id, await writer.finish())


def to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


async def to_payload(
    payloads: PayloadStore, command: TransitionCommand, payload_type_id: str, value: Any
) -> Payload:
    """``value`` inline when it fits one SQS billing chunk, else by claim check."""
    text = json.dumps(to_json(value), ensure_ascii=False, separators=(",", ":"))
    # The document travels as a JSON string inside the message, escaped: measure it as sent, so
    # a quote-heavy document cannot push the message past one 64 KiB billing chunk.
    if len(json.dumps(text, ensure_ascii=False).encode()) <= MESSAGE_INLINE_LIMIT:
        return Payload(payload_type_id=payload_type_id, payload=text)
    data = text.encode()
    ref = await payloads.put(command.tenant_id, command.execution_id, data)
    if ref.tier not in ("item", "s3"):  # inline is unreachable above 64 bytes: types honest
        return Payload(payload_type_id=payload_type_id, payload=text)
    claim = PayloadRefWire(tier=ref.tier, digest=ref.digest, size=len(data))
    return Payload(payload_type_id=payload_type_id, payload_ref=claim)
