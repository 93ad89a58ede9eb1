"""The deterministic path: slash commands, help filtered by permission, approve/reject text."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import resources
from config.settings import CONFIG_DIR
from core.domain.errors import InvalidToolCall
from core.model.commands import CommandModel, as_command, parse_command, parse_decision
from core.model.prompts import PromptLibrary
from core.tools.registry import load_tools


@pytest.fixture
def registry():
    return load_tools(CONFIG_DIR / "tools.toml")


@pytest.mark.parametrize(
    "text",
    [
        "/deploy api 1.4.2 production",
        "/deploy service=api version=1.4.2 environment=production",
        "/deploy api version=1.4.2 environment=production",
        '/deploy "api" 1.4.2 environment=production',
    ],
)
def test_positional_and_named_arguments_give_the_same_call(registry, text: str) -> None:
    assert parse_command(text, registry) == (
        "deploy",
        {"service": "api", "version": "1.4.2", "environment": "production"},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/deploy api 1.4.2 production extra", "too many arguments; usage: /deploy <service> <version> <environment>"),
        ("/deploy api force=yes", "unknown argument 'force'"),
        ("/explode", "unknown command /explode"),
        ("/deploy 'api", "cannot read the command"),
    ],
)
def test_bad_commands_say_what_is_wrong(registry, text: str, message: str) -> None:
    with pytest.raises(InvalidToolCall, match=message):
        parse_command(text, registry)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("approve k3x9p2qa", ("k3x9p2qa", True, "")),
        ("APPROVE K3X9P2QA looks good", ("k3x9p2qa", True, "looks good")),
        ("reject k3x9p2qa not during the freeze", ("k3x9p2qa", False, "not during the freeze")),
        ("rejected: k3x9p2qa", None),
        ("please approve the deploy", None),
        ("/deploy api", None),
    ],
)
def test_decision_text_is_read_exactly(text: str, expected) -> None:
    parsed = parse_decision(text)
    assert (None if parsed is None else (parsed.approval_id, parsed.approve, parsed.comment)) == expected


def test_help_lists_only_the_tools_the_caller_may_use(tmp_path: Path) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\nops = ['cli:dana']\n"
        "[tools.status]\ndescription = 'Show status.'\nexecutor = {kind='command', argv=['true']}\n"
        "[tools.drain]\ndescription = 'Drain a node.'\ncallers = ['group:ops']\n"
        "executor = {kind='command', argv=['true']}\n"
    )
    registry = load_tools(tools)
    model = CommandModel(PromptLibrary(resources.prompts_dir()))
    assert "/drain" in model.help_text(registry, "cli:dana")
    outsider = model.help_text(registry, "cli:mallory")
    assert "/status" in outsider and "/drain" not in outsider


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("help", "help"),
        ("  /help ", "help"),
        ("/ops", "help"),
        ("/ops   HELP", "help"),
        ("/status api staging", "/status api staging"),
        ("status api staging", "/status api staging"),  # a known command without its slash
        ("list-services", "/list-services"),
        (
            "deploy service=api version=1.4.2 environment=staging",
            "/deploy service=api version=1.4.2 environment=staging",
        ),
        ("status of the api", None),  # starts with a command's name, but is not its arguments
        ("status api", None),  # an argument is missing: the model reads it, when there is one
        ("deploy api to staging please", None),
        ("roll back payments in staging", None),
        ("hand_to_incident now", None),
        ("reply hello", None),
    ],
)
def test_as_command_is_help_a_slash_command_or_a_command_without_its_slash(registry, text, command) -> None:
    assert as_command(text, registry) == command
