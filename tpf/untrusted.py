"""The one edge where JSON from outside becomes values: bounded, and every failure one error.

Python's parser happily builds a list 5,000 deep (and then recursion fails far from here), an
integer of 5,000 digits (and then ``int`` refuses to print it), or ``Infinity`` (which no JSON
reader accepts back). Whatever a client, a provider or a queue hands us goes through
``parse_json`` instead, and anything out of bounds is ``InvalidInput`` with a JSON pointer, so
every caller has a single error to turn into a 400 or a rejected message.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tpf.errors import InvalidInput

MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are refused (TPF payloads nest a few levels)."""
MAX_NUMBER_CHARS = 100
"""Longer numbers are refused: they are no amount, count or id anyone sends on purpose."""
MAX_STRING_CHARS = 4 * 1024 * 1024
"""Longer strings are refused; request bodies and messages have their own, smaller limits."""


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_int=_number, parse_float=_number, parse_constant=_constant)


def parse_json(raw: str | bytes, *, pointer: str = "") -> Any:
    """The value of ``raw``, or ``InvalidInput`` naming what is wrong and where."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        value = _decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON: {exc.msg} at {exc.pos}", pointer=pointer) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput("not UTF-8", pointer=pointer) from exc
    except RecursionError as exc:
        raise InvalidInput(f"nested deeper than {MAX_DEPTH}", pointer=pointer) from exc
    except ValueError as exc:
        raise InvalidInput(str(exc), pointer=pointer) from exc
    check_bounds(value, pointer=pointer)
    return value


def check_bounds(value: Any, *, pointer: str = "") -> None:
    """Refuse a value (parsed by anyone) deeper than ``MAX_DEPTH`` or with an oversized string.

    Iterative, so a value too deep to recurse over is still judged.
    """
    pending: list[tuple[Any, str, int]] = [(value, pointer, 0)]
    while pending:
        node, where, depth = pending.pop()
        if isinstance(node, str):
            if len(node) > MAX_STRING_CHARS:
                raise InvalidInput(f"a string of {len(node)} characters", pointer=where)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise InvalidInput(f"nested deeper than {MAX_DEPTH}", pointer=where)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(key, str) and len(key) > MAX_STRING_CHARS:
                raise InvalidInput("an oversized key", pointer=where)
            pending.append((child, f"{where}/{_escape(key)}", depth + 1))


def _escape(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")
