"""config/agents.toml: focused agents, the router and workflows, checked when the bot starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import resources
from config.settings import CONFIG_DIR
from core.domain.errors import ConfigError
from core.model.prompts import PromptLibrary
from core.runtime.roster import Roster, load_roster
from core.tools.registry import load_tools

PROMPTS = PromptLibrary(resources.prompts_dir())
TOOLS = load_tools(CONFIG_DIR / "tools.toml")
AGENT = "[agents.deploybot]\ndescription = 'Deploys.'\ntools = ['deploy', 'status']\n"


def load(tmp_path: Path, text: str) -> Roster:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return load_roster(path, TOOLS, PROMPTS, default="deploybot", language=lambda name: None, step_limit=12)


def test_the_shipped_agents_are_small_and_focused() -> None:
    roster = load_roster(
        CONFIG_DIR / "agents.toml", TOOLS, PROMPTS, default="deploybot", language=lambda name: None, step_limit=10
    )
    assert roster.names() == ["deploybot", "incident", "status", "router", "release", "stale_deploys"]
    for name in ("deploybot", "incident", "status"):
        profile = roster.get(name)
        own = [tool for tool in profile.tools.names() if not tool.startswith("hand_to_")]
        assert 4 <= len(own) <= 8 and {"reply", "ask_human"} <= set(own), (name, own)
        assert profile.step_limit <= 10, "BOT_STEP_LIMIT caps every agent"
    assert (roster.get("status").step_limit, roster.get("deploybot").step_limit) == (6, 10)
    assert "deploy" not in roster.get("status").tools and "restart" not in roster.get("deploybot").tools
    assert roster.router is None, "no model: free text goes to the default agent"
    assert roster.owner("restart") == "incident" and roster.owner("status") == "deploybot"
    assert roster.owner("release") is None and roster.owner("reply") is None
    assert "release" in roster.catalog and "hand_to_incident" not in roster.catalog


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agents.deploybot]\ndescription = 'x'\ntools = ['teleport']\n", "deploybot lists tool 'teleport'"),
        (AGENT + "hand_to = ['incident']\n", "deploybot hands to 'incident', which is not another agent"),
        (AGENT + "[router]\nagents = ['deploybot', 'oncall']\n", "the router hands to 'oncall'"),
        ("[agents.ops]\ndescription = 'x'\n", "BOT_AGENT='deploybot' is not an agent in"),
        (AGENT + "[agents.Ops]\ndescription = 'x'\n", "agent name 'Ops' must be lower-case"),
        (AGENT + "[agents.nobody]\ndescription = 'x'\n", "prompt 'nobody' not found"),
        (
            AGENT + "[workflows.deploy]\ndescription = 'x'\ntarget = 'core.runtime.workflows:Release'\n",
            "so /deploy is ambiguous",
        ),
        (
            AGENT + "[workflows.ship]\ndescription = 'x'\ntarget = 'core.nowhere:Ship'\n",
            "cannot import core.nowhere:Ship",
        ),
        (AGENT + "step_limit = 0\n", "agents.deploybot.step_limit: Input should be greater than 0"),
        (
            AGENT
            + "[workflows.ship]\ndescription = 'x'\ntarget = 'core.runtime.workflows:Release'\nparameters = { type = 3 }\n",
            "workflow 'ship': parameters is not a valid JSON schema",
        ),
    ],
)
def test_a_bad_agents_file_is_a_config_error_that_says_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
