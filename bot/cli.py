"""`bot`: run the bot, chat with it in a terminal, inspect and steer threads, check the config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from bot import commands
from config.settings import Settings
from core.errors import BotError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description="A chatops bot: agent threads, tools and approvals.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run every configured channel and a worker (embedded Redis by default)")
    sub.add_parser("worker", help="run a worker that takes triggers from the inbox")
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
    sub.add_parser("check-config", help="validate configuration and environment; say how to fix what is wrong")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        if args.command == "check-config":
            return asyncio.run(commands.check_config(settings, os.environ))
        return asyncio.run(_dispatch(settings, args))
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    match args.command:
        case "run" | "worker":
            return await commands.serve(settings, stop, channels=args.command == "run")
        case "chat":
            return await commands.chat(settings, args.user or settings.cli_user, stop)
        case "approvals":
            return await commands.approvals(settings)
        case "thread":
            return await commands.thread(settings, args)
    return 2
