"""An MCP server over stdio as a tool source: listed under our policies, called through agent threads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.domain import events as ev
from core.tools.mcp.catalog import ListedTool, McpCatalog
from core.tools.registry import McpExecutor
from tests.conftest import APPROVER, Harness, ScriptedModel, call
from tests.eventually import eventually
from tests.mcp.servers.harness import SECRET, stdio_server, tools_file

Factory = Callable[..., Harness]


@pytest.fixture
async def started(fake_redis, make_harness, tmp_path: Path) -> AsyncIterator[Callable[..., Harness]]:
    """Harnesses whose MCP connections are started and, after the test, closed."""
    harnesses: list[Harness] = []

    async def start(model: ScriptedModel | None = None, *servers: str) -> Harness:
        path = tools_file(tmp_path, *(servers or (stdio_server(),)))
        h = make_harness(fake_redis, model, BOT_TOOLS_FILE=str(path), OPS_MCP_CRED=SECRET)
        harnesses.append(h)
        assert h.wiring.mcp is not None
        await h.wiring.mcp.start()
        return h

    yield start  # type: ignore[misc]
    for h in harnesses:
        assert h.wiring.mcp is not None
        await h.wiring.mcp.aclose()


def events_of(history: list[ev.Event], kind: type[ev.Event]) -> list[ev.Event]:
    return [e for e in history if isinstance(e, kind)]


async def thread_events(h: Harness) -> list[ev.Event]:
    state = (await h.wiring.store.list_threads())[0]
    return await h.wiring.store.load_events(state.thread_id)


async def test_the_servers_tools_are_listed_namespaced_with_their_schemas_hints_and_policies(started) -> None:
    h = await started()
    tools = h.wiring.tools
    names = [n for n in tools.names() if n.startswith("ops__")]
    assert names[:6] == [
        "ops__get_pods",
        "ops__scale_deployment",
        "ops__fail",
        "ops__stall",
        "ops__crash",
        "ops__add_tool",
    ]
    assert names[6:] == ["ops__rollout", "ops__rotate_key", "ops__login"]
    pods, scale = tools.get("ops__get_pods"), tools.get("ops__scale_deployment")
    assert pods.parameters["properties"]["namespace"]["type"] == "string" and pods.parameters["required"] == [
        "namespace"
    ]
    assert isinstance(scale.executor, McpExecutor) and scale.executor.tool == "scale_deployment"
    assert pods.hints.read_only and pods.hints.words() == ["read-only", "idempotent"]
    assert scale.hints.destructive and scale.hints.idempotent
    # The policy decides, not the hints: a read runs freely; the tool no pattern names is gated, and the
    # server calling it idempotent does not make it re-runnable after an interrupted worker.
    assert not pods.approval.required and pods.idempotent
    assert scale.approval.required and scale.approval.approvers == ["group:oncall"] and not scale.idempotent
    assert {d["name"] for d in tools.definitions()} >= set(names)


async def test_a_read_runs_in_an_agent_thread_and_the_model_reads_its_output(started) -> None:
    model = ScriptedModel([call("ops__get_pods", namespace="payments"), call("reply", message="two pods")])
    h = await started(model)
    await h.say("what runs in payments?")
    results = events_of(model.requests[-1].history, ev.ToolResult)
    assert (
        results[-1].tool == "ops__get_pods" and results[-1].output == "pods in payments: api-1 Running, api-2 Running"
    )
    assert (await h.outbox())[-1].text == "two pods"


async def test_an_ungoverned_tool_is_gated_and_runs_once_approved_from_the_terminal(started) -> None:
    model = ScriptedModel([call("ops__scale_deployment", name="api", replicas=5)])
    h = await started(model)
    await h.say("scale api to 5")
    request = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    assert request.tool == "ops__scale_deployment" and request.args == {"name": "api", "replicas": 5}
    assert not events_of(await thread_events(h), ev.ToolStarted), "nothing runs before the decision"
    model.script.append(call("reply", message="scaled"))
    await h.say(f"approve {request.approval_id}", sender=APPROVER)
    result = events_of(await thread_events(h), ev.ToolResult)[-1]
    # The server echoes the credential it was started with: the tools file named it, so it is redacted.
    assert result.output == "deployment api scaled to 5 replicas (token [redacted:OPS_MCP_CRED])"
    assert SECRET not in str(await thread_events(h))


async def test_an_iserror_result_is_a_tool_error_the_model_reads(started) -> None:
    model = ScriptedModel([call("ops__fail", reason="quota exceeded"), call("reply", message="it failed")])
    h = await started(model)
    await h.say("try it")
    errors = events_of(model.requests[-1].history, ev.ToolErrorEvent)
    assert (
        errors[-1].kind == "failed"
        and errors[-1].error == "ops__fail failed: Error executing tool fail: cannot do that: quota exceeded"
    )


async def test_a_call_past_its_timeout_is_a_tool_error_and_the_connection_goes_on(started) -> None:
    model = ScriptedModel([call("ops__stall"), call("ops__get_pods", namespace="x"), call("reply", message="ok")])
    h = await started(model)
    await h.say("stall")
    history = model.requests[-1].history
    assert events_of(history, ev.ToolErrorEvent)[-1].error == "ops__stall timed out after 1s"
    assert events_of(history, ev.ToolResult)[-1].tool == "ops__get_pods"


async def test_a_server_that_dies_mid_call_is_a_clear_error_and_the_next_call_reconnects(started) -> None:
    model = ScriptedModel([call("ops__crash"), call("reply", message="it crashed")])
    h = await started(model)
    await h.say("crash it")
    error = events_of(model.requests[-1].history, ev.ToolErrorEvent)[-1]
    assert error.kind == "failed" and error.error == (
        "ops__crash: MCP server ops stopped during the call; it may or may not have run (the next call reconnects)"
    )
    model.script += [call("ops__get_pods", namespace="web"), call("reply", message="back")]
    await h.say("and now?")
    assert events_of(model.requests[-1].history, ev.ToolResult)[-1].output.startswith("pods in web:")


async def test_tools_list_changed_is_picked_up_and_the_new_tool_is_gated(started) -> None:
    model = ScriptedModel([call("ops__add_tool"), call("reply", message="added")])
    h = await started(model)
    assert "ops__drain_node" not in h.wiring.tools.names()
    await h.say("add a tool")
    await eventually(lambda: "ops__drain_node" in h.wiring.tools.names(), "the re-listed tools to have drain_node")
    spec = h.wiring.tools.get("ops__drain_node")
    assert spec.description == "Drain a node." and spec.approval.required


async def test_help_and_slash_commands_list_and_run_mcp_tools_without_a_model(started) -> None:
    h = await started()
    await h.say("help")
    text = (await h.outbox())[-1].text
    assert "/ops__get_pods <namespace>" in text and "/ops__scale_deployment <name> <replicas> [approval]" in text
    await h.say("/ops__get_pods staging")
    assert (await h.outbox())[-1].text == "pods in staging: api-1 Running, api-2 Running"


async def test_a_server_that_cannot_start_leaves_the_bot_running_and_its_tools_fail_clearly(started) -> None:
    broken = '[mcp.servers.ops]\ncommand = "/nonexistent/mcp-server"\n'
    model = ScriptedModel([call("ops__get_pods", namespace="x"), call("reply", message="down")])
    h = await started(model, broken)
    await h.say("pods?")
    error = events_of(model.requests[-1].history, ev.ToolErrorEvent)[-1].error
    assert error.startswith("ops__get_pods: MCP server ops is unavailable: not reachable: cannot start")


async def interrupt(h: Harness, tool: str, args: dict[str, object]) -> str:
    """A worker died after `tool_started` for `tool` (the log says so); returns the thread id."""
    from core.domain.reducer import replay

    await h.say("/ops__get_pods setup")
    thread_id = (await h.wiring.store.list_threads())[0].thread_id
    state = await h.wiring.store.load_state(thread_id)
    now = h.clock.now()
    started = [
        ev.UserMessage(id="x1", at=now, actor="cli:operator", text=f"/{tool}", trigger_id="tx"),
        ev.ToolCall(id="x2", at=now, actor="agent", call_id="cx", tool=tool, args=args),
        ev.ToolStarted(id="x3", at=now, actor="agent", call_id="cx", tool=tool),
    ]
    await h.wiring.store.append(state, started, replay(started, state=state))
    await h.say("what happened?")
    return thread_id


@pytest.mark.parametrize(
    ("tool", "args", "rerun"),
    [("ops__scale_deployment", {"name": "a", "replicas": 1}, False), ("ops__get_pods", {"namespace": "re"}, True)],
)
async def test_an_interrupted_call_is_rerun_only_when_its_policy_says_idempotent(
    started, tool: str, args: dict[str, object], rerun: bool
) -> None:
    """The server's idempotentHint on scale_deployment does not count; the policy's `idempotent` on reads does."""
    h = await started()
    events = await h.wiring.store.load_events(await interrupt(h, tool, args))
    interrupted = [e.call_id for e in events if isinstance(e, ev.ToolErrorEvent) and e.kind == "interrupted"]
    results = [e.output for e in events if isinstance(e, ev.ToolResult) and e.call_id == "cx"]
    if rerun:
        assert not interrupted and results[0].startswith("pods in re:")
    else:
        assert interrupted == ["cx"] and not results, "recorded as interrupted, not run again"


async def test_a_mistyped_tool_of_a_listing_server_is_an_unknown_command(started) -> None:
    h = await started()
    await h.say("/ops__get_pod staging")
    said = (await h.outbox())[-1].text
    assert "unknown command /ops__get_pod;" in said and "/ops__get_pods <namespace>" in said
    assert "MCP server" not in said, "answered by the bot, not by asking the server"


async def test_an_approved_call_to_a_tool_the_server_stopped_listing_does_not_run(started) -> None:
    model = ScriptedModel([call("ops__scale_deployment", name="api", replicas=2), call("reply", message="gone")])
    h = await started(model)
    await h.say("scale api to 2")
    request = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    catalog = h.wiring.tools.mcp
    assert isinstance(catalog, McpCatalog)
    kept = [ListedTool(name, "", {"type": "object"}) for name in ("get_pods", "fail")]
    catalog.replace("ops", kept)  # as a tools/list_changed listing without scale_deployment would
    await h.say(f"approve {request.approval_id}", sender=APPROVER)
    error = events_of(await thread_events(h), ev.ToolErrorEvent)[-1]
    assert error.error == "ops__scale_deployment is no longer one of the bot's tools, so the approved call did not run"
    assert not events_of(await thread_events(h), ev.ToolStarted)


async def test_a_stdio_servers_stderr_goes_to_its_own_log_file(started, tmp_path: Path) -> None:
    await started()
    log = tmp_path / "data" / "mcp" / "ops.log"
    await eventually(lambda: log.exists() and "ops-test MCP server starting (stdio)" in log.read_text(), f"{log}")
