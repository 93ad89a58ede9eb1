"""The app manifest printed by `bot slack manifest`."""

from __future__ import annotations

from adapters.slack.channel import manifest
from config.channels import SlackSettings
from core import ToolRegistry


def settings(**env: str) -> SlackSettings:
    return SlackSettings.model_validate({"SLACK_BOT_TOKEN": "xoxb-test", **env})


def test_manifest_lists_scopes_events_commands_and_urls(slack_tools: ToolRegistry) -> None:
    app = manifest(settings(), slack_tools, "https://bot.example.com/")
    url = "https://bot.example.com/slack/events"
    commands = {c["command"]: c for c in app["features"]["slash_commands"]}
    assert list(commands)[:3] == ["/ops", "/list-services", "/status"] and "/deploy" in commands
    assert "/reply" not in commands and "/ask-human" not in commands
    assert commands["/deploy"]["usage_hint"] == "<service> <version> <environment>"
    assert all(c["url"] == url for c in commands.values())
    assert app["settings"]["event_subscriptions"] == {
        "request_url": url,
        "bot_events": [
            "app_mention",
            "message.channels",
            "message.groups",
            "message.im",
            "assistant_thread_started",
            "assistant_thread_context_changed",
        ],
    }
    assert "assistant_description" in app["features"]["assistant_view"]
    assert app["settings"]["interactivity"] == {"is_enabled": True, "request_url": url}
    assert app["settings"]["socket_mode_enabled"] is False
    scopes = set(app["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "im:history", "assistant:write"} <= scopes


def test_manifest_without_a_public_url_is_for_socket_mode(slack_tools: ToolRegistry) -> None:
    app = manifest(settings(SLACK_COMMAND="/deploybot"), slack_tools, None, per_tool_commands=False)
    assert app["settings"]["socket_mode_enabled"] is True
    assert [c["command"] for c in app["features"]["slash_commands"]] == ["/deploybot"]
    assert "url" not in app["features"]["slash_commands"][0]
    assert "request_url" not in app["settings"]["interactivity"]
