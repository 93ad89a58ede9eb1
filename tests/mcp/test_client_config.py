"""The `[mcp]` section of the tools file: what it accepts, what it refuses, and agents naming MCP tools."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from config.resources import prompts_dir
from config.settings import CONFIG_DIR
from core.domain.errors import ConfigError
from core.model.prompts import PromptLibrary
from core.runtime.roster import load_roster
from core.tools.registry import load_tools
from tests.conftest import ScriptedModel, call
from tests.mcp.servers.harness import SECRET, stdio_server, tools_file

HEAD = '[groups]\noncall = ["cli:operator"]\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(HEAD + text)
    return path


def test_the_shipped_default_declares_no_server_and_its_commented_example_loads(tmp_path: Path) -> None:
    shipped = (CONFIG_DIR / "tools.toml").read_text()
    assert load_tools(CONFIG_DIR / "tools.toml").mcp is None, "the default needs no MCP server running"
    example = shipped[shipped.index("# [mcp]\n") :]
    # The example's TOML lines uncommented (`# [table]`, `# key = ...`); its prose stays out.
    uncommented = "\n".join(m[2:] for m in example.splitlines() if re.match(r"# (\[|[a-z_]+ = )", m))
    tools = load_tools(write(tmp_path, uncommented))
    assert tools.mcp is not None and sorted(getattr(tools.mcp, "servers", {})) == ["grafana", "k8s"]
    gated = tools.get("k8s__scale_deployment")  # not listed yet: a stand-in under the same policies
    assert gated.approval.required and gated.approval.expires_in == 1800
    assert not tools.get("k8s__get_pods").approval.required


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[mcp]\napprovers = ["group:oncall"]\n[mcp.servers.k8s]\ncommand = "x"\nenv = { TOKEN = "abc123" }\n',
            "env.TOKEN must name the environment variable that holds it, as {env:NAME}",
        ),
        ('[mcp.servers.k8s]\ncommand = "x"\n', "declares servers but no approvers: set [mcp].approvers"),
        ('[mcp]\napprovers = ["group:nobody"]\n', "names unknown group 'group:nobody'"),
        (
            '[mcp]\napprovers = ["group:oncall"]\n[mcp.servers.k8s]\ncommand = "x"\nurl = "http://h/mcp"\n',
            "set either command (a stdio server) or url",
        ),
        ('[mcp]\napprovers = ["group:oncall"]\n[mcp.servers.k8s__x]\nurl = "http://h/mcp"\n', "single _ between"),
    ],
)
def test_a_bad_mcp_section_is_refused_naming_the_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_tools(write(tmp_path, text))


async def test_agents_name_mcp_tools_like_any_other_and_see_them_live(fake_redis, make_harness, tmp_path) -> None:
    """An agent lists ops__get_pods before the server has listed anything; once it has, the agent's
    registry has the listed schema, and its model calls the tool through the thread."""
    path = tools_file(tmp_path, stdio_server())
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.opsy]\ndescription = "Ops."\ntools = ["ops__get_pods", "ops__scale_deployment"]\n')
    prompts = Path(shutil.copytree(prompts_dir(), tmp_path / "prompts"))
    shutil.copy(prompts / "deploybot.md", prompts / "opsy.md")
    tools = load_tools(path)
    roster = load_roster(
        agents, tools, PromptLibrary(prompts), default="opsy", language=lambda name: None, step_limit=12
    )
    assert roster.get("opsy").tools.get("ops__get_pods").parameters == {"type": "object"}, "a stand-in before listing"

    model = ScriptedModel([call("ops__get_pods", namespace="n1"), call("reply", message="listed")])
    h = make_harness(
        fake_redis,
        model,
        BOT_TOOLS_FILE=str(path),
        BOT_AGENTS_FILE=str(agents),
        BOT_PROMPTS_DIR=str(prompts),
        BOT_AGENT="opsy",
        OPS_MCP_CRED=SECRET,
    )
    assert h.wiring.mcp is not None
    await h.wiring.mcp.start()
    try:
        profile = h.wiring.threads.loop.roster.get("opsy")
        assert profile.tools.get("ops__get_pods").parameters["required"] == ["namespace"], "the listed schema"
        assert profile.tools.names() == ["ops__get_pods", "ops__scale_deployment", "ask_human", "reply"]
        await h.say("pods in n1?")
        assert (await h.outbox())[-1].text == "listed"
    finally:
        await h.wiring.mcp.aclose()
