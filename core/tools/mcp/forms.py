"""An MCP server's question (`elicitation/create`) as a question any channel can carry, and its answer read back.

Pure, no SDK: `core.tools.mcp.client` hands the request's fields in, `core.runtime.asking` posts the
question and reads each answer with `answer_to`.

- **Form mode** asks for a flat object of strings, numbers, integers, booleans and enums (the spec's
  restricted schema). The question lists each field; the person answers with `name: value` lines (one
  field: the value alone), or a channel that shows forms sends those lines. The answer is coerced to the
  fields' types and checked against the schema; a wrong one is sent back with what to fix.
- **URL mode** names the page's domain before its link; "Opened" accepts (the person consented to go there).
- **Secrets are never asked for in a form** (the spec forbids it): a field that asks for a password, a
  token, a key or a credential makes the whole form refused before anyone sees it.
- Every question offers **Decline** and **Cancel**, as the spec's two ways not to answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import jsonschema

DECLINE, CANCEL, OPENED = "Decline", "Cancel", "Opened"
Action = Literal["accept", "decline", "cancel"]
PRIMITIVES = ("string", "number", "integer", "boolean")
SECRET_WORDS = re.compile(
    r"passw|passphrase|secret|token|api[\s_-]?key|private[\s_-]?key|credential|\botp\b|\bpin\b|ssn", re.IGNORECASE
)
TRUE, FALSE = {"yes", "y", "true", "1", "on"}, {"no", "n", "false", "0", "off"}


class FormError(ValueError):
    """An answer that does not fit the form; the message says what to fix."""


@dataclass(frozen=True)
class Ask:
    """One server question, as `core.runtime.asking` posts it: a form (`schema`) or a page (`url`)."""

    server: str
    tool: str
    message: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    url: str = ""

    @property
    def mode(self) -> Literal["form", "url"]:
        return "url" if self.url else "form"

    @property
    def fields(self) -> list[str]:
        return list(self.schema.get("properties", {}))

    @property
    def domain(self) -> str:
        return urlsplit(self.url).hostname or "?"


@dataclass(frozen=True)
class Answer:
    action: Action
    content: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False  # "cancel" because nobody answered in time


class Asker(Protocol):
    """Who asks the thread's person a server's question and waits for the answer (`core.runtime.asking`)."""

    async def ask(self, ask: Ask, seconds: float) -> Answer: ...


def refusal(ask: Ask) -> str | None:
    """Why the bot will not ask this at all: a form for secrets, a form it cannot show, a link that is not https."""
    if ask.mode == "url":
        scheme = urlsplit(ask.url).scheme
        return None if scheme in ("https", "http") else f"its page {ask.url[:80]!r} is not an http(s) link"
    properties = ask.schema.get("properties", {})
    if ask.schema.get("type", "object") != "object" or not isinstance(properties, dict):
        return "its form is not a flat object of fields"
    for name, spec in properties.items():
        if not isinstance(spec, dict) or spec.get("type") not in PRIMITIVES and "enum" not in spec:
            return f"its field {name!r} is not a string, number, boolean or choice (forms are flat)"
        words = " ".join(str(spec.get(key, "")) for key in ("title", "description"))
        if spec.get("format") == "password" or spec.get("writeOnly") or SECRET_WORDS.search(f"{name} {words}"):
            return (
                f"its field {name!r} asks for a secret, which a form must never do (MCP elicitation); "
                "the server should use URL mode for credentials"
            )
    return None


def choices(spec: Mapping[str, Any]) -> list[str]:
    if "enum" in spec:
        return [str(value) for value in spec["enum"]]
    if "oneOf" in spec:
        return [str(option.get("const")) for option in spec["oneOf"] if isinstance(option, dict)]
    return ["yes", "no"] if spec.get("type") == "boolean" else []


def options(ask: Ask) -> list[str]:
    """The buttons: a one-field choice's values, or "Opened" for a page; then Decline and Cancel."""
    if ask.mode == "url":
        return [OPENED, DECLINE, CANCEL]
    properties = ask.schema.get("properties", {})
    only = choices(next(iter(properties.values()))) if len(properties) == 1 else []
    return [*only, DECLINE, CANCEL]


def question(ask: Ask) -> str:
    """The question's text: who asks, why, and how to answer on a channel that shows no form."""
    head = f"MCP server {ask.server} asks, for {ask.tool}: {ask.message}"
    if ask.mode == "url":
        return f"{head}\nIt wants you to open a page on {ask.domain}: {ask.url}\nChoose {OPENED} once you have, or {DECLINE}."
    properties: dict[str, Any] = dict(ask.schema.get("properties", {}))
    required = set(ask.schema.get("required", []))
    lines = [head]
    for name, spec in properties.items():
        lines.append(f"• {name} ({kind_of(spec)}, {need(spec, name in required)}){about(spec)}")
    how = "Answer with the value" if len(properties) == 1 else "Answer with one `name: value` line per field"
    lines.append(f"{how}, or {DECLINE} / {CANCEL}.")
    return "\n".join(lines)


def kind_of(spec: Mapping[str, Any]) -> str:
    if spec.get("type") == "boolean":
        return "yes or no"
    return "one of " + " / ".join(choices(spec)) if choices(spec) else str(spec.get("type", "string"))


def need(spec: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in spec:
        return "optional"
    default = spec["default"]
    return f"optional, default {('yes' if default else 'no') if isinstance(default, bool) else default}"


def about(spec: Mapping[str, Any]) -> str:
    text = spec.get("description") or spec.get("title") or ""
    return f": {text}" if text else ""


def answer_to(ask: Ask, text: str) -> Answer:
    """The person's reply as the server's answer; raises FormError saying what to fix."""
    said = text.strip()
    offered = options(ask)
    if said.isdigit() and 1 <= int(said) <= len(offered) and not _takes_number(ask):
        said = offered[int(said) - 1]  # "reply with 1, 2 or 3", as channels without buttons say
    for word, action in ((DECLINE, "decline"), (CANCEL, "cancel")):
        if said.casefold() == word.casefold():
            return Answer(action)  # type: ignore[arg-type]  # the two literals above
    if ask.mode == "url":
        if said.casefold() == OPENED.casefold():
            return Answer("accept")
        raise FormError(f"answer {OPENED}, {DECLINE} or {CANCEL}")
    return Answer("accept", parse(ask.schema, said))


def parse(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """`name: value` lines (or `name=value`; one field: the value alone) as the form's typed content."""
    properties: dict[str, Any] = dict(schema.get("properties", {}))
    given: dict[str, str] = {}
    if len(properties) == 1 and not _named_line(text, properties):
        given[next(iter(properties))] = text
    else:
        for line in filter(None, (line.strip() for line in text.splitlines())):
            name, sep, value = _split(line)
            if not sep or name not in properties:
                fields = ", ".join(properties)
                raise FormError(f"{line[:60]!r} is not a `name: value` line for one of the fields ({fields})")
            given[name] = value.strip()
    content = {name: coerce(name, properties[name], value) for name, value in given.items()}
    for name, spec in properties.items():
        if name not in content and "default" in spec:
            content[name] = spec["default"]
    missing = [name for name in schema.get("required", []) if name not in content]
    if missing:
        raise FormError(f"missing {', '.join(missing)}: add a `name: value` line for each")
    try:
        jsonschema.validate(content, dict(schema))
    except jsonschema.ValidationError as exc:
        where = ".".join(str(part) for part in exc.absolute_path) or "the answer"
        raise FormError(f"{where}: {exc.message}") from None
    return content


def coerce(name: str, spec: Mapping[str, Any], value: str) -> Any:
    """The text as the field's type; a choice by its value or number."""
    options = choices(spec)
    if options and spec.get("type") != "boolean":
        if value.isdigit() and 1 <= int(value) <= len(options) and value not in options:
            value = options[int(value) - 1]
        match = next((option for option in options if option.casefold() == value.casefold()), None)
        if match is None:
            raise FormError(f"{name}: {value!r} is not one of {' / '.join(options)}")
        value = match
    match spec.get("type", "string"):
        case "boolean":
            if value.casefold() in TRUE | FALSE:
                return value.casefold() in TRUE
            raise FormError(f"{name}: answer yes or no, not {value!r}")
        case "integer":
            try:
                return int(value)
            except ValueError:
                raise FormError(f"{name}: {value!r} is not a whole number") from None
        case "number":
            try:
                return float(value)
            except ValueError:
                raise FormError(f"{name}: {value!r} is not a number") from None
    return value


def _takes_number(ask: Ask) -> bool:
    """A one-field form for a number: a digit is its value, not an option's number."""
    properties = list(ask.schema.get("properties", {}).values())
    return len(properties) == 1 and properties[0].get("type") in ("integer", "number") and not choices(properties[0])


def _split(line: str) -> tuple[str, str, str]:
    colon, equals = line.find(":"), line.find("=")
    at = min(i for i in (colon, equals) if i >= 0) if max(colon, equals) >= 0 else -1
    if at < 0:
        return line, "", ""
    return line[:at].strip().lstrip("•-* ").strip(), line[at], line[at + 1 :]


def _named_line(text: str, properties: Mapping[str, Any]) -> bool:
    name, sep, _ = _split(text.strip())
    return bool(sep) and name in properties
