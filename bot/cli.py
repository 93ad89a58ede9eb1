"""`bot`: run the bot, chat with it in a terminal, inspect and steer threads, check the config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.audit import since
from config.settings import Settings
from core.domain.errors import BotError


def _version() -> str:
    try:
        return importlib.metadata.version("opsbot")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description="A chatops bot: agent threads, tools and approvals.")
    parser.add_argument("--version", action="version", version=f"opsbot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="everything in one process: web console + API, configured channels, a worker")
    sub.add_parser(
        "serve", help="the HTTP server (API, webhooks, console, /slack/events, /metrics, health) and a worker"
    )
    sub.add_parser("channels", help="the configured chat channels (Slack, Discord, email) without a worker")
    sub.add_parser("worker", help="a worker that takes triggers from the inbox; run as many as you like")
    chat = sub.add_parser("chat", help="talk to the bot in this terminal; answer approvals inline")
    chat.add_argument("--user", help="your name at the terminal (identity cli:<user>; default BOT_CLI_USER)")
    thread = sub.add_parser("thread", help="list, show, replay, pause or resume threads")
    tsub = thread.add_subparsers(dest="action", required=True)
    tsub.add_parser("list", help="recent threads with their derived state")
    show = tsub.add_parser("show", help="a thread's events")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print events as JSON lines")
    replay = tsub.add_parser("replay", help="the thread's state as of event N (time travel)")
    replay.add_argument("id")
    replay.add_argument("--until", type=int, default=None, metavar="N", help="stop after event N (1-based)")
    for action in ("pause", "resume"):
        control = tsub.add_parser(action, help=f"{action} a thread")
        control.add_argument("id")
        control.add_argument("--reason", default="")
    sub.add_parser("approvals", help="pending approvals across all channels")
    audit = sub.add_parser("audit", help="the approvals' hash-chained audit trail: export it, verify it")
    asub = audit.add_subparsers(dest="action", required=True)
    export = asub.add_parser("export", help="the records as JSON lines on stdout, oldest first")
    export.add_argument("--since", type=since, default=None, help="a duration (24h, 7d) or an ISO time")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    asub.add_parser("verify", help="check the hash chain; exit 1 naming the first changed, removed or reordered record")
    grants = sub.add_parser("grants", help="standing grants: list them, revoke one")
    gsub = grants.add_subparsers(dest="action", required=True)
    gsub.add_parser("list", help="every grant kept: live ones first, then expired or revoked")
    revoke = gsub.add_parser("revoke", help="revoke a grant now: its calls ask for approval again")
    revoke.add_argument("id")
    grants.add_argument("--user", help="who revokes (identity cli:<user>; default BOT_CLI_USER)")
    mcp = sub.add_parser("mcp", help="the bot's approvals as an MCP server on stdio (Claude Code, any MCP client)")
    mcp.add_argument("--worker", action="store_true", help="also run a worker here (when no bot process runs one)")
    slack = sub.add_parser("slack", help="Slack app helpers")
    slack_sub = slack.add_subparsers(dest="action", required=True)
    man = slack_sub.add_parser("manifest", help="print the Slack app manifest (JSON) for the configured tools")
    man.add_argument(
        "--public-url", help="where Slack reaches /slack/events (default BOT_PUBLIC_URL); none: Socket Mode"
    )
    man.add_argument("--no-tool-commands", action="store_true", help="only SLACK_COMMAND, no slash command per tool")
    discord_cmd = sub.add_parser("discord", help="Discord channel tasks")
    dsub = discord_cmd.add_subparsers(dest="action", required=True)
    sync = dsub.add_parser("sync-commands", help="register /ops and one slash command per tool (when tools change)")
    where = sync.add_mutually_exclusive_group()
    where.add_argument("--guild", type=int, help="register in this guild only, at once (default DISCORD_GUILD_ID)")
    where.add_argument("--global", dest="everywhere", action="store_true", help="register in every guild (slow)")
    evals = sub.add_parser("eval", help="run eval scenarios through the agents' prompts and model; print accuracy")
    evals.add_argument("paths", nargs="*", type=Path, help="scenario files or folders (default: BOT_EVALS_DIR, evals/)")
    evals.add_argument("--agent", help="only the scenarios of this agent")
    evals.add_argument(
        "--record", action="store_true", help="save the model's answers for offline replay (needs the API key)"
    )
    evals.add_argument("--min-accuracy", type=float, default=0.0, metavar="F", help="exit 1 below this (0 to 1)")
    sub.add_parser("check-config", help="validate configuration and environment; say how to fix what is wrong")
    init = sub.add_parser("init", help="write an editable copy of the default config, prompts and evals")
    init.add_argument("dir", nargs="?", type=Path, default=Path("."), help="where (default: the current folder)")
    init.add_argument("--force", action="store_true", help="overwrite files that are already there")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # `--help` and argument errors end here, before the heavy imports
    try:
        if args.command == "init":  # before the settings: a copy to start from needs no environment
            from bot.init import init

            return init(args.dir, force=args.force)
        settings = Settings.from_env(os.environ)
        if args.command == "check-config":
            from bot.check import check_config  # not the commands: a check loads only what it checks

            return asyncio.run(check_config(settings, os.environ))
        from bot import subcommands as commands

        if args.command == "slack":
            return commands.slack_manifest(settings, os.environ, args.public_url, not args.no_tool_commands)
        if args.command == "eval":
            return asyncio.run(commands.evals(settings, args))
        return asyncio.run(_dispatch(settings, args))
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from bot import subcommands as commands

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    match args.command:
        case "run":
            return await commands.serve(settings, stop, worker=True, channels=True, http=True)
        case "serve":
            return await commands.serve(settings, stop, worker=True, channels=False, http=True)
        case "channels":
            return await commands.serve(settings, stop, worker=False, channels=True, http=False)
        case "worker":
            return await commands.serve(settings, stop, worker=True, channels=False, http=False)
        case "chat":
            return await commands.chat(settings, args.user or settings.cli_user, stop)
        case "approvals":
            return await commands.approvals(settings)
        case "mcp":
            return await commands.mcp(settings, stop, worker=args.worker)
        case "thread":
            return await commands.thread(settings, args)
        case "audit":
            from bot.audit import audit

            return await audit(settings, args)
        case "grants":
            from bot.grants import grants

            return await grants(settings, args)
        case "discord":
            return await commands.discord_sync(settings, args.guild, args.everywhere)
    return 2
