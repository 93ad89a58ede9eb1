"""Webhook triggers: signed payloads launch the hook's agent; anything else is refused with nothing enqueued."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from bot.http.app import build_app
from bot.http.hooks import HookConfig, load_hooks, signature
from config.settings import CONFIG_DIR
from core.domain.errors import ConfigError
from core.domain.ids import new_id
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

[hooks.standard]
scheme = "standard"
text = "/run_tests {service}"
"""
STANDARD_SECRET = "whsec_" + base64.b64encode(b"a-standard-webhooks-secret").decode()


@pytest.fixture
def hooks(tmp_path: Path) -> HookConfig:
    path = tmp_path / "hooks.toml"
    path.write_text(HOOKS_TOML)
    secrets = {"BOT_HOOK_SECRET_CI_FAILURE": SECRET, "BOT_HOOK_SECRET_ALERT": SECRET}
    return load_hooks(path, secrets | {"BOT_HOOK_SECRET_STANDARD": STANDARD_SECRET})


@pytest.fixture
async def hook_server(fake_redis, start_server, hooks) -> Server:
    return await start_server(fake_redis, hooks=hooks)


async def post_hook(server: Server, name: str, payload: object, secret: str | None = SECRET, **headers: str):
    body = json.dumps(payload).encode()
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret, body)
    headers.setdefault("X-GitHub-Delivery", new_id())
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


async def test_a_replayed_delivery_is_refused_and_counted(hook_server: Server) -> None:
    first = await post_hook(hook_server, "ci_failure", {"service": "api"}, **{"X-GitHub-Delivery": "d-1"})
    again = await post_hook(hook_server, "ci_failure", {"service": "api"}, **{"X-GitHub-Delivery": "d-1"})
    assert (first.status, first.body["duplicate"]) == (202, False)
    assert (again.status, again.code) == (409, "replayed") and first.body["thread_id"] in again.message
    assert await hook_server.inbox_length() == 1
    registry = hook_server.harness.wiring.metrics.registry
    counted = {"hook": "ci_failure", "reason": "replayed"}
    assert registry.get_sample_value("bot_webhook_refusals_total", counted) == 1


async def test_a_github_delivery_needs_its_delivery_id(hook_server: Server) -> None:
    body = json.dumps({"service": "api"}).encode()
    headers = {"X-Hub-Signature-256": signature(SECRET, body), "Content-Type": "application/json"}
    reply = await hook_server.call("POST", "/v1/hooks/ci_failure", token=None, data=body, headers=headers)
    assert (reply.status, reply.code) == (400, "delivery_id_required") and "X-GitHub-Delivery" in reply.message
    assert await hook_server.inbox_length() == 0


def standard_headers(body: bytes, msg_id: str, at: float, secret: str = STANDARD_SECRET) -> dict[str, str]:
    signed = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": signed,
        "Content-Type": "application/json",
    }


async def post_standard(server: Server, body: bytes, headers: dict[str, str]):
    return await server.call("POST", "/v1/hooks/standard", token=None, data=body, headers=headers)


async def test_standard_webhooks_refuse_replays_stale_and_future_timestamps_and_changed_ids(hook_server) -> None:
    body = json.dumps({"service": "payments"}).encode()
    now = time.time()
    signed = standard_headers(body, "msg_1", now)

    accepted = await post_standard(hook_server, body, signed)
    replayed = await post_standard(hook_server, body, signed)
    changed_id = await post_standard(hook_server, body, signed | {"webhook-id": "msg_2"})
    stale = await post_standard(hook_server, body, standard_headers(body, "msg_3", now - 600))
    future = await post_standard(hook_server, body, standard_headers(body, "msg_4", now + 600))
    github_style = await post_hook(hook_server, "standard", {"service": "payments"})

    assert accepted.status == 202
    assert (replayed.status, replayed.code) == (409, "replayed")
    assert (changed_id.status, changed_id.code) == (401, "bad_signature"), "the id is signed: it cannot be changed"
    assert (stale.status, stale.code) == (401, "stale_timestamp") and "more than 5 minutes" in stale.message
    assert (future.status, future.code) == (401, "stale_timestamp")
    assert (github_style.status, github_style.code) == (401, "bad_signature")
    assert "uses Standard Webhooks" in github_style.message
    assert await hook_server.inbox_length() == 1


def test_a_standard_hook_with_a_secret_that_is_not_base64_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text('[hooks.s]\nscheme = "standard"\ntext = "/list_services"\n')
    with pytest.raises(ConfigError, match="must be the sender's whsec_<base64> secret"):
        load_hooks(path, {"BOT_HOOK_SECRET_S": "whsec_!!!not base64!!!"})


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
        build_app(make_harness(fake_redis).wiring, tokens=TOKENS, hooks=load_hooks(path, {}))


def test_a_missing_hooks_file_means_no_hooks(tmp_path: Path) -> None:
    assert load_hooks(tmp_path / "absent.toml", {}).hooks == {}
