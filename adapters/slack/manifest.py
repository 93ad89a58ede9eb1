"""The Slack app manifest for this bot and its tools (`bot slack manifest`).

Paste the JSON at https://api.slack.com/apps -> Create New App -> From a manifest.
"""

from __future__ import annotations

from typing import Any

from adapters.slack.blocks import clip
from config.channels import SlackSettings
from core import ToolRegistry, ToolSpec

EVENTS_PATH = "/slack/events"
BOT_SCOPES = [
    "app_mentions:read",  # @bot in channels
    "channels:history",  # replies in the bot's threads in public channels
    "groups:history",  # ... and in private channels it was invited to
    "im:history",  # direct messages
    "chat:write",  # replies, cards, progress edits, ephemeral refusals
    "commands",  # slash commands
    "files:write",  # output too long for messages
    "assistant:write",  # the assistant thread: status while tools run, suggested prompts, titles
]
BOT_EVENTS = [
    "app_mention",
    "message.channels",
    "message.groups",
    "message.im",
    "assistant_thread_started",  # suggested prompts
    "assistant_thread_context_changed",  # the channel the person is viewing
]


def tool_commands(tools: ToolRegistry) -> list[ToolSpec]:
    """The configured tools (built-ins like `reply` have no executor and get no command)."""
    return [spec for spec in map(tools.get, tools.names()) if spec.executor is not None]


def command_name(spec: ToolSpec) -> str:
    return "/" + spec.name.replace("_", "-")[:31]


def _hint(spec: ToolSpec) -> str:
    required = set(spec.parameters.get("required", []))
    return " ".join(f"<{name}>" if name in required else f"[{name}]" for name in spec.param_names)


def manifest(
    settings: SlackSettings,
    tools: ToolRegistry,
    public_url: str | None,
    *,
    app_name: str = "DeployBot",
    per_tool_commands: bool = True,
) -> dict[str, Any]:
    """The app manifest: HTTP mode at `<public_url>/slack/events`, or Socket Mode without a public URL
    (or when SLACK_APP_TOKEN is set)."""
    socket_mode = settings.app_token is not None or not public_url
    url = {} if socket_mode else {"url": f"{(public_url or '').rstrip('/')}{EVENTS_PATH}"}
    request_url = {"request_url": url["url"]} if url else {}
    commands = [
        {
            "command": settings.command,
            "description": f"Ask {app_name}: a tool and its arguments, a question, or help",
            "usage_hint": "deploy api 1.4.2 production | help",
            "should_escape": False,
            **url,
        }
    ]
    if per_tool_commands:
        commands += [
            {
                "command": command_name(spec),
                "description": clip(spec.description, 100),
                "usage_hint": clip(_hint(spec), 100),
                "should_escape": False,
                **url,
            }
            for spec in tool_commands(tools)
            if command_name(spec) != settings.command
        ]
    return {
        "display_information": {"name": app_name, "description": "Chatops: tools, approvals and threads"},
        "features": {
            "app_home": {"messages_tab_enabled": True, "messages_tab_read_only_enabled": False},
            "bot_user": {"display_name": app_name.lower(), "always_online": True},
            # "Agents & AI Apps": the assistant thread in Slack's side panel and the app's DM
            "assistant_view": {
                "assistant_description": f"Ask {app_name} to check, deploy, roll back or restart services; "
                "risky commands wait for an approval."
            },
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {
            "event_subscriptions": {**request_url, "bot_events": BOT_EVENTS},
            "interactivity": {"is_enabled": True, **request_url},
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }
