"""An MCP server over streamable HTTP as a tool source; and `bot check-config` reporting each declared server."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.check import check_config
from core.domain import events as ev
from tests.conftest import APPROVER, Harness, ScriptedModel, call
from tests.conftest import test_settings as settings_for
from tests.mcp.servers.harness import SECRET, HttpServer, http_server, running_http_server, stdio_server, tools_file


@pytest.fixture
def http() -> Iterator[HttpServer]:
    with running_http_server() as server:
        yield server


@pytest.fixture
async def harness(fake_redis, make_harness, tmp_path: Path, http: HttpServer) -> AsyncIterator[Harness]:
    model = ScriptedModel([])
    path = tools_file(tmp_path, http_server("k8s", http.url))
    h = make_harness(fake_redis, model, BOT_TOOLS_FILE=str(path), OPS_MCP_CRED=SECRET)
    assert h.wiring.mcp is not None
    await h.wiring.mcp.start()
    yield h
    await h.wiring.mcp.aclose()


def last(model: ScriptedModel, kind: type[ev.Event]) -> ev.Event:
    return [e for e in model.requests[-1].history if isinstance(e, kind)][-1]


async def test_tools_over_http_are_listed_called_and_gated(harness: Harness) -> None:
    """Listed at start with the bearer header from the environment, a read answered through a thread."""
    tools = harness.wiring.tools
    assert "k8s__get_pods" in tools.names() and tools.get("k8s__scale_deployment").approval.required
    await harness.say("/k8s__get_pods prod")
    assert (await harness.outbox())[-1].text == "pods in prod: api-1 Running, api-2 Running"


async def test_a_gated_http_tool_runs_after_approval_and_a_killed_server_is_reconnected(
    fake_redis, make_harness, tmp_path: Path, http: HttpServer
) -> None:
    model = ScriptedModel([call("k8s__scale_deployment", name="web", replicas=2)])
    path = tools_file(tmp_path, http_server("k8s", http.url))
    h = make_harness(fake_redis, model, BOT_TOOLS_FILE=str(path), OPS_MCP_CRED=SECRET)
    assert h.wiring.mcp is not None
    await h.wiring.mcp.start()
    try:
        await h.say("scale web to 2")
        request = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
        model.script.append(call("reply", message="done"))
        await h.say(f"approve {request.approval_id}", sender=APPROVER)
        assert last(model, ev.ToolResult).output.startswith("deployment web scaled to 2 replicas")

        http.kill()  # the server goes away between calls...
        model.script += [call("k8s__get_pods", namespace="a"), call("reply", message="down")]
        await h.say("pods?")
        error = last(model, ev.ToolErrorEvent).error
        assert error.startswith("k8s__get_pods: ") and "k8s" in error, error

        http.start()  # ...and comes back on the same address: the next call reconnects
        model.script += [call("k8s__get_pods", namespace="b"), call("reply", message="up")]
        await h.say("pods now?")
        assert last(model, ev.ToolResult).output.startswith("pods in b:")
    finally:
        await h.wiring.mcp.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_check_config_reports_each_server_tools_or_why_not(
    tmp_path: Path, embedded_redis: str, http: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = f'[mcp.servers.silent]\ncommand = {sys.executable!r}\nargs = ["-c", "import time; time.sleep(60)"]\nconnect_timeout = 1\n'
    chatty = (
        f'[mcp.servers.chatty]\ncommand = {sys.executable!r}\nargs = ["-c", "print(\'hello\')"]\nconnect_timeout = 5\n'
    )
    path = tools_file(
        tmp_path,
        stdio_server("ops"),
        http_server("k8s", http.url),
        http_server("gone", f"http://127.0.0.1:{closed_port()}/mcp"),
        silent,
        chatty,
    )
    settings = settings_for(tmp_path, BOT_TOOLS_FILE=str(path), REDIS_URL=embedded_redis)
    code = await check_config(settings, {"PATH": "/usr/bin:/bin", "OPS_MCP_CRED": SECRET})
    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line for line in out.splitlines() if line[4:].startswith("mcp ")}
    assert code == 1
    listed = "ops__get_pods, ops__scale_deployment, ops__fail, ops__stall, ops__crash, ops__add_tool, ops__rollout"
    assert lines["ok  mcp ops"] == f"ok  mcp ops: 9 tools over stdio (1 gated): {listed}, ops__rotate_key, ops__login"
    assert lines["ok  mcp k8s"].startswith("ok  mcp k8s: 9 tools over http (1 gated): k8s__get_pods")
    assert lines["ERR mcp gone"].startswith("ERR mcp gone: not reachable: http://127.0.0.1:")
    assert "timed out after 1s" in lines["ERR mcp silent"]
    assert "not an MCP server" in lines["ERR mcp chatty"] or "closed" in lines["ERR mcp chatty"], lines
    assert SECRET not in out


async def test_a_server_restarted_between_calls_answers_the_very_next_call(harness: Harness, http: HttpServer) -> None:
    await harness.say("/k8s__get_pods before")
    http.kill()
    http.start()  # a redeploy: same address, a new process that knows no session of ours
    await harness.say("/k8s__get_pods after")
    assert (await harness.outbox())[-1].text == "pods in after: api-1 Running, api-2 Running"
