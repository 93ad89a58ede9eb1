"""Webhook triggers: signed payloads launch the hook's agent; anything else is refused with nothing enqueued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.http import build_app
from bot.http_hooks import HookConfig, load_hooks, signature
from config.settings import CONFIG_DIR
from core.errors import ConfigError
from tests.web.conftest import TOKENS, Server

SECRET = "s3cret-for-tests"
HOOKS_TOML = """
[hooks.ci_failure]
text = "/run_tests {service}"

[hooks.alert]
agent = "deploybot"
text = "Alert {alert.name} for {alert.service}"

[hooks.unsigned]
text = "/list_services"
"""


@pytest.fixture
def hooks(tmp_path: Path) -> HookConfig:
    path = tmp_path / "hooks.toml"
    path.write_text(HOOKS_TOML)
    return load_hooks(path, {"BOT_HOOK_SECRET_CI_FAILURE": SECRET, "BOT_HOOK_SECRET_ALERT": SECRET})


@pytest.fixture
async def hook_server(fake_redis, start_server, hooks) -> Server:
    return await start_server(fake_redis, hooks=hooks)


async def post_hook(server: Server, name: str, payload: object, secret: str | None = SECRET, **headers: str):
    body = json.dumps(payload).encode()
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret, body)
    headers["Content-Type"] = "application/json"
    return await server.call("POST", f"/v1/hooks/{name}", token=None, data=body, headers=headers)


async def test_a_signed_payload_launches_the_agent_with_the_payload_in_its_input(hook_server: Server) -> None:
    reply = await post_hook(hook_server, "ci_failure", {"service": "payments", "branch": "main"})
    assert reply.status == 202
    await hook_server.drain()
    thread = (await hook_server.call("GET", f"/v1/threads/{reply.body['thread_id']}")).body
    events = thread["events"]
    assert thread["thread"]["requester"] == "hook:ci_failure"
    assert [e["text"] for e in events if e["type"] == "user_message"] == ["/run_tests payments"]
    calls = [(e["tool"], e["args"]) for e in events if e["type"] == "tool_call"]
    assert calls[0] == ("run_tests", {"service": "payments"})
    assert any(e["type"] == "tool_result" for e in events)


@pytest.mark.parametrize(
    ("name", "secret", "headers", "status", "code"),
    [
        ("ci_failure", "wrong-secret", {}, 401, "bad_signature"),
        ("ci_failure", None, {}, 401, "bad_signature"),
        ("ci_failure", None, {"X-Hub-Signature-256": "sha256=00"}, 401, "bad_signature"),
        ("nosuchhook", SECRET, {}, 404, "hook_not_found"),
        ("unsigned", SECRET, {}, 404, "hook_not_found"),  # defined, but its secret is not set: disabled
    ],
)
async def test_bad_signatures_and_unknown_hooks_enqueue_nothing(
    hook_server: Server, name, secret, headers, status, code
) -> None:
    reply = await post_hook(hook_server, name, {"service": "api"}, secret, **headers)
    assert (reply.status, reply.code) == (status, code)
    assert await hook_server.inbox_length() == 0


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"alert": {"name": "HighErrorRate"}}, "no field 'alert.service'"),
        (["not", "an", "object"], "expects a JSON object"),
        # Fine: "Alert approve for abcd1234" does not read as a decision.
        ({"alert": {"name": "approve", "service": "abcd1234"}}, None),
    ],
)
async def test_payloads_that_do_not_fit_the_template_are_422(hook_server: Server, payload, fragment) -> None:
    reply = await post_hook(hook_server, "alert", payload)
    if fragment is None:
        assert reply.status == 202
        return
    assert reply.status == 422 and fragment in reply.message
    assert await hook_server.inbox_length() == 0


async def test_a_payload_value_fills_one_argument_and_never_adds_one(hook_server: Server) -> None:
    reply = await post_hook(hook_server, "ci_failure", {"service": "api production --by mallory"})
    await hook_server.drain()
    events = (await hook_server.call("GET", f"/v1/threads/{reply.body['thread_id']}")).body["events"]
    call = next(e for e in events if e["type"] == "tool_call")
    assert call["args"] == {"service": "api production --by mallory"}
    assert [e["kind"] for e in events if e["type"] == "tool_error"] == ["invalid"]
    assert not any(e["type"] == "tool_started" for e in events)


async def test_a_redelivery_is_accepted_once(hook_server: Server) -> None:
    first = await post_hook(hook_server, "ci_failure", {"service": "api"}, **{"X-GitHub-Delivery": "d-1"})
    again = await post_hook(hook_server, "ci_failure", {"service": "api"}, **{"X-GitHub-Delivery": "d-1"})
    assert (first.status, first.body["duplicate"]) == (202, False)
    assert (again.status, again.body["duplicate"]) == (202, True)
    assert again.body["thread_id"] == first.body["thread_id"]
    assert await hook_server.inbox_length() == 1


def test_the_shipped_hooks_file_loads_with_secrets_and_disables_hooks_without() -> None:
    path = CONFIG_DIR / "hooks.toml"
    assert set(load_hooks(path, {}).hooks) >= {"ci_failure", "alert"}
    assert load_hooks(path, {}).enabled("ci_failure") is None
    assert load_hooks(path, {"BOT_HOOK_SECRET_CI_FAILURE": SECRET}).enabled("ci_failure") is not None


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[hooks.x\n", "is not valid TOML"),
        ("[hooks.Bad-Name]\ntext = 'x'\n", "hook 'Bad-Name'"),
        ("[hooks.x]\nagent = 'a'\n", "hook 'x'"),
        ("[hooks.x]\ntext = 'x'\nsecret = 'in-a-file'\n", "hook 'x'"),
    ],
)
def test_hook_file_errors_name_the_hook_and_the_fix(tmp_path: Path, toml: str, fragment: str) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=fragment):
        load_hooks(path, {})


def test_a_hook_for_another_agent_is_a_config_error(tmp_path: Path, fake_redis, make_harness) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text("[hooks.x]\nagent = 'mailbot'\ntext = 'hi'\n")
    with pytest.raises(ConfigError, match="names agent 'mailbot', but the agents are "):
        build_app(make_harness(fake_redis).core, tokens=TOKENS, hooks=load_hooks(path, {}))


def test_a_missing_hooks_file_means_no_hooks(tmp_path: Path) -> None:
    assert load_hooks(tmp_path / "absent.toml", {}).hooks == {}
