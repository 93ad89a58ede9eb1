"""Tools as data: config checks, argument validation, approval policy, executors and redaction."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from config.settings import CONFIG_DIR
from core.domain.errors import ConfigError, InvalidToolCall, ToolFailed
from core.tools.executors import CallContext, ToolRunner
from core.tools.redact import Redactor
from core.tools.registry import ToolSpec, load_tools

CTX = CallContext(thread_id="t1", call_id="c1", requester="cli:operator")


@pytest.fixture
def registry():
    return load_tools(CONFIG_DIR / "tools.toml")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(text)
    return path


def test_default_config_loads_with_gates_on_production(registry) -> None:
    deploy = registry.get("deploy")
    assert deploy.approval.applies({"service": "api", "version": "1.4.2", "environment": "production"})
    assert not deploy.approval.applies({"service": "api", "version": "1.4.2", "environment": "staging"})
    assert not registry.get("status").approval.applies({"service": "api", "environment": "production"})
    assert {"ask_human", "reply"} <= set(registry.names())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"service": "api", "version": "latest", "environment": "production"},
            "deploy: version: 'latest' does not match",
        ),
        ({"service": "api", "version": "1.4.2"}, "'environment' is a required property"),
        ({"service": "nope", "version": "1.4.2", "environment": "staging"}, "service: 'nope' is not one of"),
        ({"service": "api", "version": "1.4.2", "environment": "staging", "force": True}, "Additional properties"),
    ],
)
def test_invalid_arguments_are_refused_with_one_line(registry, args, message) -> None:
    with pytest.raises(InvalidToolCall, match=message):
        registry.validate("deploy", args)


def test_unknown_tool_names_the_known_ones(registry) -> None:
    with pytest.raises(InvalidToolCall, match="unknown tool 'drop_database'; known tools: ask_human, check_url"):
        registry.validate("drop_database", {})


def test_approvers_come_from_groups_and_self_approval_can_be_forbidden(registry) -> None:
    assert registry.may_approve("cli:operator", ["group:oncall"], "cli:someone", allow_self=True)
    assert not registry.may_approve("cli:mallory", ["group:oncall"], "cli:someone", allow_self=True)
    assert not registry.may_approve("cli:operator", ["group:oncall"], "cli:operator", allow_self=False)
    assert registry.may_approve("slack:T1:U9", ["slack:T1:U9"], "cli:operator", allow_self=False)


def test_groups_can_be_extended_from_the_environment() -> None:
    registry = load_tools(CONFIG_DIR / "tools.toml", {"oncall": ["slack:T1:U2"]})
    assert registry.groups["oncall"] == ["cli:operator", "slack:T1:U2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tools.x]\ndescription = 'x'\n", "tool 'x' in .* has no executor"),
        ("[tools.x]\ndescription='x'\nexecutor={kind='command', argv=['echo','{nope}']}\n", r"placeholder \{nope\}"),
        ("[tools.x]\ndescription='x'\nexecutor={kind='shell', cmd='rm -rf /'}\n", "tool 'x' in .*: executor"),
        (
            (
                "[tools.x]\ndescription='x'\nexecutor={kind='command', argv=['true']}\n"
                "approval={required=true, approvers=['group:ghosts']}\n"
            ),
            "unknown approver group 'group:ghosts'",
        ),
        (
            "[tools.x]\ndescription='x'\nexecutor={kind='command', argv=['true']}\napproval={required=true}\n",
            "lists no approvers",
        ),
        ("[tools.reply]\ndescription='x'\nexecutor={kind='command', argv=['true']}\n", "shadows a built-in"),
        ("[tools.x\n", "not valid TOML"),
    ],
)
def test_config_mistakes_name_the_tool_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tools(_write(tmp_path, text))


def _runner(tmp_path: Path, env: dict[str, str] | None = None, http=None) -> ToolRunner:
    env = {"PATH": os.environ["PATH"], **(env or {})}
    return ToolRunner(workdir=tmp_path, data_dir=tmp_path, env=env, redactor=Redactor.from_env(env), http=http)


def _command(argv: list[str], **extra) -> ToolSpec:
    return ToolSpec.model_validate(
        {"name": "t", "description": "t", "executor": {"kind": "command", "argv": argv}, **extra}
    )


async def test_command_arguments_are_never_interpreted_by_a_shell(tmp_path: Path) -> None:
    spec = _command(
        [sys.executable, "-c", "import sys; print(sys.argv[1])", "{text}"],
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
    )
    out = await _runner(tmp_path).run(spec, {"text": "$(touch pwned); `id`; echo hi"}, CTX)
    assert out.text == "$(touch pwned); `id`; echo hi"
    assert not (tmp_path / "pwned").exists()


async def test_a_failing_command_is_one_line_with_its_status(tmp_path: Path) -> None:
    spec = _command([sys.executable, "-c", "import sys; print('step 1'); print('disk full'); sys.exit(3)"])
    with pytest.raises(ToolFailed, match="^t exited with status 3: disk full$"):
        await _runner(tmp_path).run(spec, {}, CTX)


async def test_a_slow_command_times_out_and_is_killed(tmp_path: Path) -> None:
    spec = _command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    with pytest.raises(ToolFailed, match="timed out after 0.3s"):
        await _runner(tmp_path).run(spec, {}, CTX)


async def test_output_is_capped_and_secrets_are_redacted(tmp_path: Path) -> None:
    spec = _command(
        [sys.executable, "-c", "import os; print(os.environ['DEPLOY_TOKEN'] + ' ' + 'x' * 500)"],
        max_output=100,
        executor={
            "kind": "command",
            "argv": [sys.executable, "-c", "import os; print(os.environ['DEPLOY_TOKEN'] + ' ' + 'x' * 500)"],
            "env": ["DEPLOY_TOKEN"],
        },
    )
    out = await _runner(tmp_path, {"DEPLOY_TOKEN": "s3cr3t-value-123"}).run(spec, {}, CTX)
    assert out.text.startswith("[redacted:DEPLOY_TOKEN] xxx")
    assert "s3cr3t-value-123" not in out.text and "[output truncated:" in out.text


async def test_http_executor_sends_secret_headers_and_reports_status(tmp_path: Path) -> None:
    seen: list[tuple[str, str, dict]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers["Authorization"], await request.json()))
        status = 503 if request.match_info["service"] == "payments" else 200
        return web.json_response({"ok": status == 200, "token": request.headers["Authorization"]}, status=status)

    app = web.Application()
    app.router.add_post("/restart/{service}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    spec = ToolSpec.model_validate(
        {
            "name": "restart",
            "description": "r",
            "parameters": {"type": "object", "properties": {"service": {"type": "string"}}},
            "executor": {
                "kind": "http",
                "url": f"http://127.0.0.1:{port}/restart/{{service}}",
                "headers": {"Authorization": "Bearer {env:OPS_API_TOKEN}"},
            },
        }
    )
    try:
        async with aiohttp.ClientSession() as session:
            tools = _runner(tmp_path, {"OPS_API_TOKEN": "tok-abcdef-123"}, http=session)
            out = await tools.run(spec, {"service": "api"}, CTX)
            with pytest.raises(ToolFailed, match="answered 503"):
                await tools.run(spec, {"service": "payments"}, CTX)
    finally:
        await runner.cleanup()
    assert seen[0] == ("/restart/api", "Bearer tok-abcdef-123", {"service": "api"})
    assert (
        out.text.startswith("HTTP 200") and "tok-abcdef-123" not in out.text and "[redacted:OPS_API_TOKEN]" in out.text
    )


async def test_python_executor_calls_the_function_and_reports_its_failure(tmp_path: Path) -> None:
    spec = ToolSpec.model_validate(
        {
            "name": "check",
            "description": "c",
            "parameters": {"type": "object", "properties": {"url": {"type": "string"}}},
            "executor": {"kind": "python", "target": "config.deploybot.probes:check_url"},
        }
    )
    with pytest.raises(ToolFailed, match=r"GET http://127.0.0.1:9/ failed"):
        await _runner(tmp_path).run(spec, {"url": "http://127.0.0.1:9/"}, CTX)


async def test_check_url_reports_status_and_latency(tmp_path: Path) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        registry = load_tools(CONFIG_DIR / "tools.toml")
        out = await _runner(tmp_path).run(registry.get("check_url"), {"url": f"http://127.0.0.1:{port}/health"}, CTX)
    finally:
        await runner.cleanup()
    assert f"GET http://127.0.0.1:{port}/health -> 200 in " in out.text and "(healthy); body: ok" in out.text


def test_redactor_replaces_secrets_in_models_and_ignores_short_values() -> None:
    from core.domain.events import Reply

    redactor = Redactor.from_env({"SLACK_BOT_TOKEN": "xoxb-1234567890", "PORT_KEY": "abc", "HOME": "/root"})
    reply = Reply(id="o1", channel="cli", conversation="c", thread_id="t", text="token is xoxb-1234567890, port abc")
    assert redactor.model(reply).text == "token is [redacted:SLACK_BOT_TOKEN], port abc"
    assert redactor.text("/root") == "/root"
