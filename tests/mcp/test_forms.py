"""Reading a person's reply as an MCP form's answer, and the forms the bot will not ask at all."""

from __future__ import annotations

import pytest

from core.tools.mcp.forms import Answer, Ask, FormError, answer_to, options, question, refusal

SCALE = {
    "type": "object",
    "properties": {
        "replicas": {"type": "integer", "minimum": 1, "maximum": 20, "description": "how many"},
        "zone": {"type": "string", "enum": ["eu-1", "eu-2"]},
        "drain": {"type": "boolean", "default": True},
        "ratio": {"type": "number"},
    },
    "required": ["replicas", "zone"],
}


def form(schema: dict[str, object]) -> Ask:
    return Ask("k8s", "k8s__scale", "How should I scale it?", schema=schema)


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("replicas: 3\nzone: eu-2", {"replicas": 3, "zone": "eu-2", "drain": True}),
        ("replicas=3\nzone=2\ndrain=no\nratio=0.5", {"replicas": 3, "zone": "eu-2", "drain": False, "ratio": 0.5}),
        ("• replicas: 3\n\n  zone: EU-1  ", {"replicas": 3, "zone": "eu-1", "drain": True}),
    ],
)
def test_name_value_lines_are_typed_by_the_schema_with_defaults_filled(text: str, content: dict[str, object]) -> None:
    assert answer_to(form(SCALE), text) == Answer("accept", content)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("zone: eu-1", "missing replicas: add a `name: value` line for each"),
        ("replicas: three\nzone: eu-1", "replicas: 'three' is not a whole number"),
        ("replicas: 30\nzone: eu-1", "replicas: 30 is greater than the maximum of 20"),
        ("replicas: 3\nzone: us-1", "zone: 'us-1' is not one of eu-1 / eu-2"),
        ("replicas: 3\nzone: eu-1\ndrain: perhaps", "drain: answer yes or no, not 'perhaps'"),
        ("three replicas please", "'three replicas please' is not a `name: value` line for one of the fields"),
        ("colour: red", "'colour: red' is not a `name: value` line"),
    ],
)
def test_an_answer_that_does_not_fit_says_what_to_fix(text: str, why: str) -> None:
    with pytest.raises(FormError) as refused:
        answer_to(form(SCALE), text)
    assert str(refused.value).startswith(why)


def test_decline_and_cancel_by_word_or_number_and_a_one_field_form_takes_the_value_alone() -> None:
    one = form({"type": "object", "properties": {"env": {"type": "string", "enum": ["staging", "production"]}}})
    assert options(one) == ["staging", "production", "Decline", "Cancel"]
    assert answer_to(one, "decline") == Answer("decline")
    assert answer_to(one, "4") == Answer("cancel")
    assert answer_to(one, "2") == Answer("accept", {"env": "production"})
    count = form({"type": "object", "properties": {"replicas": {"type": "integer"}}, "required": ["replicas"]})
    assert answer_to(count, "2") == Answer("accept", {"replicas": 2}), "a number for a number field is its value"
    assert answer_to(count, "replicas: 7") == Answer("accept", {"replicas": 7})


def test_the_question_lists_each_field_and_how_to_answer() -> None:
    assert question(form(SCALE)).splitlines() == [
        "MCP server k8s asks, for k8s__scale: How should I scale it?",
        "• replicas (integer, required): how many",
        "• zone (one of eu-1 / eu-2, required)",
        "• drain (yes or no, optional, default yes)",
        "• ratio (number, optional)",
        "Answer with one `name: value` line per field, or Decline / Cancel.",
    ]


@pytest.mark.parametrize(
    ("field", "spec"),
    [
        ("password", {"type": "string"}),
        ("db", {"type": "string", "description": "the database password"}),
        ("key", {"type": "string", "title": "API key"}),
        ("value", {"type": "string", "format": "password"}),
        ("github_token", {"type": "string"}),
        ("answer", {"type": "string", "description": "your one-time code (OTP)"}),
    ],
)
def test_a_form_asking_for_a_secret_is_refused(field: str, spec: dict[str, object]) -> None:
    why = refusal(form({"type": "object", "properties": {field: spec}}))
    assert why is not None and why.startswith(f"its field {field!r} asks for a secret")


def test_nested_forms_and_non_http_links_are_refused_and_plain_ones_are_not() -> None:
    nested = {"type": "object", "properties": {"target": {"type": "object", "properties": {}}}}
    assert refusal(form(nested)) == "its field 'target' is not a string, number, boolean or choice (forms are flat)"
    assert (
        refusal(Ask("k8s", "t", "m", url="javascript:alert(1)"))
        == "its page 'javascript:alert(1)' is not an http(s) link"
    )
    assert refusal(form(SCALE)) is None and refusal(Ask("k8s", "t", "m", url="https://sso.example.com/x")) is None
