"""Prompts are files rendered with explicit variables; the rendered text is snapshot-tested."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import resources
from config.settings import CONFIG_DIR
from core.domain.errors import ConfigError
from core.model.commands import CommandModel
from core.model.prompts import PromptLibrary
from core.tools.registry import load_tools

SNAPSHOTS = Path(__file__).parent / "snapshots"
LIBRARY = PromptLibrary(resources.prompts_dir())


def _matches_snapshot(name: str, text: str) -> None:
    """Compare with tests/snapshots/<name>.txt; UPDATE_SNAPSHOTS=1 rewrites it."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"prompt {name} changed; review it and rerun with UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize("agent", ["deploybot", "router", "incident", "status"])
def test_system_prompt_snapshot(agent: str) -> None:
    rendered = LIBRARY.render(agent, agent_name=agent)
    _matches_snapshot(agent, rendered.text)
    assert len(rendered.sha256) == 64


@pytest.mark.parametrize("prompt", ["help", "no_model"])
def test_command_help_snapshots(prompt: str) -> None:
    text = CommandModel(LIBRARY).help_text(load_tools(CONFIG_DIR / "tools.toml"), "cli:operator", prompt)
    _matches_snapshot(prompt, text)


def test_missing_and_unexpected_variables_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"needs variables \['agent_name'\]"):
        LIBRARY.render("deploybot")
    with pytest.raises(ConfigError, match=r"has no slots for \['user'\]"):
        LIBRARY.render("deploybot", agent_name="x", user="mallory")
    with pytest.raises(ConfigError, match="prompt 'nope' not found"):
        LIBRARY.render("nope")
