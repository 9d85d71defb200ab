"""An await step's response JSON schema as an HTML form, and the form's fields back as JSON.

What a form can show: an object of scalar properties (string, number, integer, boolean, a
string enum as a choice), optional where the schema allows null. A *decision union* is a choice
plus that branch's fields, not a JSON text box: a string-enum property whose values each name an
object property of the same schema (the restaurant's ``type: accepted | declined`` beside
``accepted: {...}`` and ``declined: {...}``). The answer is then ``{type: "accepted",
"accepted": {...fields}}``. Any other schema is answered as JSON in a text area.

The form only shapes the answer; the step's schema still judges it when it is completed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from tpf.errors import InvalidInput
from tpf.untrusted import parse_json

Kind = Literal["text", "number", "integer", "checkbox", "select"]
RAW = "response"
"""The text area's field when the schema is beyond a form."""


@dataclass(frozen=True)
class Field:
    name: str
    """The property's name in the answer."""
    kind: Kind
    required: bool
    options: tuple[str, ...] = ()
    default: str = ""
    branch: str | None = None

    @property
    def input_name(self) -> str:
        return f"{self.branch}.{self.name}" if self.branch else self.name


@dataclass(frozen=True)
class Branch:
    name: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class ResponseForm:
    fields: tuple[Field, ...] = ()
    choice: str | None = None
    """The property naming the branch of a decision union, if the schema is one."""
    branches: tuple[Branch, ...] = ()
    raw: bool = False


def response_form(schema: dict[str, Any], request: Any) -> ResponseForm:
    """The form for ``schema``, its fields filled from same-named fields of the ``request``."""
    prefill = request if isinstance(request, dict) else {}
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict):
        return ResponseForm(raw=True)
    required = set(schema.get("required") or ())
    choice, branches = _union(schema, properties, prefill)
    in_branches = {f.name for b in branches for f in b.fields} | {b.name for b in branches}
    fields = []
    for name, spec in properties.items():
        if name == choice or name in in_branches:
            continue
        field = _scalar(schema, name, spec, name in required, prefill, None)
        if field is None:
            return ResponseForm(raw=True)
        fields.append(field)
    return ResponseForm(fields=tuple(fields), choice=choice, branches=branches)


def answer_of(form: ResponseForm, values: dict[str, str]) -> Any:
    """The JSON answer the submitted ``values`` make; InvalidInput names the field at fault."""
    if form.raw:
        return parse_json(values.get(RAW, ""))
    answer = _values(form.fields, values)
    if form.choice is not None:
        chosen = values.get(form.choice, "")
        branch = next((b for b in form.branches if b.name == chosen), None)
        if branch is None:
            names = " or ".join(b.name for b in form.branches)
            raise InvalidInput(f"choose {names}", pointer=f"/{form.choice}")
        answer[form.choice] = branch.name
        answer[branch.name] = _values(branch.fields, values)
    return answer


def _union(
    schema: dict[str, Any], properties: dict[str, Any], prefill: dict[str, Any]
) -> tuple[str | None, tuple[Branch, ...]]:
    for name, spec in properties.items():
        options = _resolve(schema, spec).get("enum")
        if not options or not all(isinstance(o, str) for o in options):
            continue
        branches = []
        for option in options:
            target = _resolve(schema, properties.get(option))
            inner = target.get("properties")
            if target.get("type") != "object" or not isinstance(inner, dict):
                break
            required = set(target.get("required") or ())
            fields = [
                _scalar(schema, n, s, n in required, prefill, option) for n, s in inner.items()
            ]
            if any(f is None for f in fields):
                break
            branches.append(Branch(option, tuple(f for f in fields if f is not None)))
        else:
            return name, tuple(branches)
    return None, ()


def _resolve(schema: dict[str, Any], spec: Any) -> dict[str, Any]:
    """``spec`` with a local ``$ref`` followed and an ``anyOf [X, null]`` read as X."""
    if not isinstance(spec, dict):
        return {}
    options = spec.get("anyOf")
    if isinstance(options, list):
        concrete = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(concrete) == 1:
            spec = concrete[0]
    ref = spec.get("$ref") if isinstance(spec, dict) else None
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        spec = (schema.get("$defs") or {}).get(ref.removeprefix("#/$defs/"), {})
    return spec if isinstance(spec, dict) else {}


def _scalar(
    schema: dict[str, Any],
    name: str,
    spec: Any,
    required: bool,
    prefill: dict[str, Any],
    branch: str | None,
) -> Field | None:
    resolved = _resolve(schema, spec)
    kind: Kind
    options: tuple[str, ...] = ()
    if isinstance(resolved.get("enum"), list) and all(isinstance(o, str) for o in resolved["enum"]):
        kind, options = "select", tuple(resolved["enum"])
    elif resolved.get("type") == "string":
        kind = "text"
    elif resolved.get("type") == "number":
        kind = "number"
    elif resolved.get("type") == "integer":
        kind = "integer"
    elif resolved.get("type") == "boolean":
        kind = "checkbox"
    else:
        return None
    return Field(name, kind, required, options, _default(name, kind, prefill), branch)


def _default(name: str, kind: Kind, prefill: dict[str, Any]) -> str:
    value = prefill.get(name)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if kind == "text" and name.endswith("At"):
        # A decision's time is when it is made: filled in, and the person may change it.
        return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return ""


def _values(fields: tuple[Field, ...], values: dict[str, str]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for field in fields:
        text = values.get(field.input_name, "")
        pointer = "/" + field.input_name.replace(".", "/")
        if field.kind == "checkbox":
            answer[field.name] = text == "on"
            continue
        if text == "":
            if field.required:
                raise InvalidInput(f"{field.name} is required", pointer=pointer)
            continue
        answer[field.name] = _converted(field, text, pointer=pointer)
    return answer


def _converted(field: Field, text: str, pointer: str) -> Any:
    if field.kind == "select" and text not in field.options:
        raise InvalidInput(
            f"{field.name} must be one of {', '.join(field.options)}", pointer=pointer
        )
    if field.kind == "integer":
        try:
            return int(text, 10)
        except ValueError as exc:
            raise InvalidInput(f"{field.name} must be a whole number", pointer=pointer) from exc
    if field.kind == "number":
        try:
            number = Decimal(text)
        except InvalidOperation as exc:
            raise InvalidInput(f"{field.name} must be a number", pointer=pointer) from exc
        if not number.is_finite():
            raise InvalidInput(f"{field.name} must be a finite number", pointer=pointer)
        return int(number) if number == number.to_integral_value() else float(number)
    return text
