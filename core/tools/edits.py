"""An approver's edit of a gated call's arguments: read from `name=value` text, merged, checked.

Text channels (terminal, chat messages, email replies, Slack and Discord modals) write an edit as
`name=value` for the tool's parameters, in the decision's comment; the API and the console send them as
an object. Either way the edit is a set of changes over the call's arguments: a value replaces one, an
empty value (`name=`, or null) removes it. The result is checked against the tool's schema before any
approval is given for it (`core.runtime.approvals`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from core.domain.errors import InvalidToolCall
from core.tools.registry import ToolSpec

ASSIGNMENT = re.compile(r"^([A-Za-z_][\w-]*)=(.*)$", re.DOTALL)


def coerce(spec: ToolSpec, name: str, raw: str) -> Any:
    """`raw` as the type the tool's schema gives `name` (a string when it gives none)."""
    schema = spec.parameters.get("properties", {}).get(name, {})
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "yes", "1")
        if kind == "array":
            return [item for item in raw.split(",") if item]
        if kind == "object":
            return json.loads(raw)
    except ValueError:
        raise InvalidToolCall(f"{spec.name}: {name} must be {kind}, got {raw!r}") from None
    return raw


def split_edits(spec: ToolSpec, text: str) -> tuple[dict[str, Any], str]:
    """The `name=value` changes `text` makes to the tool's parameters, and the rest of it (the comment).

    A line that is one assignment takes the rest of the line as the value (`reason=rolled back at 9`);
    otherwise each word of a line that assigns a parameter is one (`replicas=3 environment="eu west"`).
    Words naming no parameter stay in the comment, so `approve x7 ratio=fine by me` edits nothing."""
    names = set(spec.param_names)
    changes: dict[str, Any] = {}
    rest: list[str] = []
    for line in text.splitlines():
        whole = ASSIGNMENT.match(line.strip())
        if whole and whole.group(1) in names and not _assigns(whole.group(2), names):
            changes[whole.group(1)] = _value(spec, whole.group(1), _unquoted(whole.group(2).strip()))
            continue
        try:
            words = shlex.split(line)
        except ValueError:  # an unbalanced quote: the line is a comment
            rest.append(line)
            continue
        kept = []
        for word in words:
            found = ASSIGNMENT.match(word)
            if found and found.group(1) in names:
                changes[found.group(1)] = _value(spec, found.group(1), found.group(2))
            else:
                kept.append(word)
        rest.append(" ".join(kept) if len(kept) != len(words) else line)
    return changes, "\n".join(rest).strip()


def edited(args: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`args` with `changes` applied: a None value removes the argument."""
    merged = {**args, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def _value(spec: ToolSpec, name: str, raw: str) -> Any:
    return None if raw == "" else coerce(spec, name, raw)


def _assigns(value: str, names: set[str]) -> bool:
    """The value of a one-assignment line is words of their own: more assignments (`replicas=3 environment=prod`),
    or a quoted value with words after it (`version="1.4" looks fine`)."""
    try:
        words = shlex.split(value)
    except ValueError:
        return False
    if value.strip()[:1] in ("'", '"') and len(words) > 1:
        return True
    return any((found := ASSIGNMENT.match(word)) and found.group(1) in names for word in words)


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


# --- edit forms (Slack and Discord modals): the call's arguments as text, and a submission read back ---


def as_text(value: Any) -> str:
    """An argument as an edit form shows it, and as `coerce` reads it back: arrays comma-separated,
    objects as JSON, booleans `true` / `false`; absent is empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(item if isinstance(item, str) else json.dumps(item) for item in value)
    return json.dumps(value)


def form_fields(spec: ToolSpec) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The tool's parameters (name -> schema) and the required ones: one field each on a form."""
    return dict(spec.parameters.get("properties", {})), set(spec.parameters.get("required", []))


def form_changes(
    spec: ToolSpec, args: Mapping[str, Any], texts: Mapping[str, str], validate: Callable[[dict[str, Any]], None]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What a submitted form's `texts` (name -> text) change in the call's `args` (name -> value, None
    removes), and the refusals by parameter name; a text as the form showed it changes nothing. Each change
    is checked with `validate` (the registry's schema check, raising InvalidToolCall) on its own, so a
    refusal names its field, then all together (a schema may tie parameters to one another)."""
    props, _ = form_fields(spec)
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, text in texts.items():
        if name not in props or text == as_text(args.get(name)):
            continue
        try:
            found[name] = _typed(spec, name, props[name], text)
            validate(edited(args, {name: found[name]}))
        except InvalidToolCall as exc:
            errors[name] = _said(exc, spec.name)
    if found and not errors:
        try:
            validate(edited(args, found))
        except InvalidToolCall as exc:
            errors[next(iter(found))] = _said(exc, spec.name)
    return found, errors


def _typed(spec: ToolSpec, name: str, schema: Mapping[str, Any], text: str) -> Any:
    """An emptied field removes the argument; an enum's choice is the enum's own value (of any type)."""
    text = text.strip()
    if text == "":
        return None
    for choice in schema.get("enum", []):
        if as_text(choice) == text:
            return choice
    return coerce(spec, name, text)


def _said(exc: InvalidToolCall, tool: str) -> str:
    """`deploy: version: 'x' does not match ...` without the tool, which the form names already."""
    return str(exc).removeprefix(f"{tool}: ").replace("arguments: ", "", 1)
