"""What each `bot` subcommand does, on a running core."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping

from adapters.terminal import CHANNEL, Terminal
from bot import views
from bot.main import (
    Wiring,
    anthropic_client,
    build_roster,
    channel_adapters,
    running_wiring,
    setup_logging,
)
from config import resources
from config.settings import Settings
from core.domain.errors import ConfigError
from core.domain.events import ControlTrigger
from core.domain.ids import new_id
from core.domain.reducer import replay
from core.model.prompts import PromptLibrary
from core.runtime.roster import Roster
from core.tools.redact import Redactor
from core.tools.registry import load_tools


async def serve(settings: Settings, stop: asyncio.Event, *, worker: bool, channels: bool, http: bool) -> int:
    """Run the parts of the bot this process is for, until SIGTERM/SIGINT or until a part fails.

    Started before Redis (a supervisor starts everything at once), it waits for Redis, logging each attempt.
    """
    setup_logging(settings, Redactor.from_env(os.environ))  # before connecting: the wait is logged
    async with running_wiring(settings, wait=True) as wiring:
        log = logging.getLogger("bot")
        adapters = channel_adapters(wiring) if channels else []  # run here: gateways, watchers, renderers
        tasks = [asyncio.create_task(adapter.run(stop), name=f"channel-{adapter.name}") for adapter in adapters]
        if http:
            from bot.http.app import run_http
            from bot.http.hooks import load_hooks

            # Without the channels (`bot serve`), their HTTP endpoints still enqueue here; `bot channels` renders.
            served = adapters if channels else channel_adapters(wiring, http_only=True)
            routes = [route for adapter in served for route in getattr(adapter, "routes", list)()]

            async def ready() -> dict[str, bool]:
                """The channels run in this process; one that only serves its routes here needs no connection."""
                return {adapter.name: bool(getattr(adapter, "healthy", True)) for adapter in adapters}

            hooks = load_hooks(settings.hooks_file, os.environ)
            task = run_http(
                wiring,
                settings.http,
                stop,
                owner=settings.cli_identity,
                hooks=hooks,
                extra_routes=routes,
                readiness=ready,
            )
            tasks.append(asyncio.create_task(task, name="http"))
        elif channels and not adapters:
            print(
                "no channel is configured (Slack, Discord, email); see README. `bot run` also serves the web console."
            )
        runner = wiring.worker() if worker else None
        if runner is not None:
            tasks.append(asyncio.create_task(runner.run(), name="worker"))
            log.info("worker %s started", runner.name)
            if (scheduler := wiring.scheduler()) is not None:  # in every worker process: each tick fires once
                tasks.append(asyncio.create_task(scheduler.run(stop), name="scheduler"))
                log.info("scheduler started: %s", ", ".join(schedule.name for schedule in scheduler.schedules))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)  # stop, or a part failed
        log.info("stopping: finishing the current step")
        stop.set()  # every part stops
        if runner is not None:
            runner.stop()
        await asyncio.gather(*tasks, stopped)  # surfaces why a part stopped
    return 0


async def discord_sync(settings: Settings, guild: int | None, everywhere: bool) -> int:
    """Register /ops and one slash command per tool; run it when the tools change."""
    if settings.discord is None:
        raise ConfigError("DISCORD_TOKEN is not set; set it to the bot token to register slash commands")
    from adapters.discord.channel import sync_commands

    target = None if everywhere else (guild or settings.discord.guild_id)
    count = await sync_commands(settings.discord, load_tools(settings.tools_file, settings.groups), target)
    where = f"to guild {target} (available now)" if target else "globally (may take up to an hour to appear)"
    print(f"registered {count} slash commands {where}")
    return 0


def slack_manifest(settings: Settings, env: Mapping[str, str], public_url: str | None, tool_commands: bool) -> int:
    from adapters.slack.channel import manifest
    from config.channels import SlackSettings, env_values

    # The manifest is made before the app exists: no token is needed to print it.
    slack = settings.slack or SlackSettings.model_validate({**env_values(SlackSettings, env), "bot_token": "unset"})
    tools = load_tools(settings.tools_file, settings.groups)
    url = public_url or settings.http.public_url
    print(json.dumps(manifest(slack, tools, url, per_tool_commands=tool_commands), indent=2))
    return 0


def _banner(wiring: Wiring, identity: str) -> str:
    model = wiring.settings.model if wiring.settings.has_model else "none (commands only; set ANTHROPIC_API_KEY)"
    where = wiring.settings.redis_url or f"embedded Redis in {wiring.settings.data_dir}"
    return (
        f"bot> DeployBot at your terminal as {identity}; state in {where}; model: {model}.\n"
        "bot> Type `help` for commands, `quit` to leave."
    )


async def chat(settings: Settings, user: str, stop: asyncio.Event) -> int:
    async with running_wiring(settings) as wiring:
        setup_logging(settings, wiring.redactor, level="WARNING")
        terminal = Terminal(wiring.bus, user)
        print(_banner(wiring, terminal.identity), flush=True)
        for record in await wiring.store.pending_approvals():
            if wiring.tools.may_approve(terminal.identity, record.allowed, record.requester, record.allow_self):
                print(f"bot> pending approval: {views.approval_line(record)}", flush=True)
        terminal.after = await terminal.resume_position()
        worker = wiring.worker()
        printing = asyncio.Event()
        working = asyncio.create_task(worker.run(block_ms=200))
        printer = asyncio.create_task(terminal.print_outbox(printing))
        reading = asyncio.create_task(terminal.read_input())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([reading, stopped, working], return_when=asyncio.FIRST_COMPLETED)
        worker.stop()
        printing.set()
        await asyncio.gather(working, printer)  # surfaces a crash of either
        if not stop.is_set():
            # End of input: finish what was typed, and show what it produced, before leaving.
            while await worker.run_once():
                pass
            await terminal.print_new()
        for task in (reading, stopped):
            task.cancel()
        await asyncio.gather(reading, stopped, return_exceptions=True)
    return 0


async def mcp(settings: Settings, stop: asyncio.Event, *, worker: bool) -> int:
    """The MCP server on stdio (`bot.mcp`); the protocol owns stdout, so nothing else is printed there."""
    from bot.mcp.stdio import run_stdio

    return await run_stdio(settings, stop, worker=worker)


async def approvals(settings: Settings) -> int:
    async with running_wiring(settings) as wiring:
        records = await wiring.store.pending_approvals()
        for record in records:
            print(views.approval_line(record))
        if not records:
            print("no pending approvals")
    return 0


async def thread(settings: Settings, args: argparse.Namespace) -> int:
    async with running_wiring(settings) as wiring:
        if args.action == "list":
            for state in await wiring.store.list_threads():
                print(views.thread_line(state))
            return 0
        events = await wiring.store.load_events(args.id)
        if not events and args.action in ("show", "replay"):
            print(f"no thread {args.id!r}; see `bot thread list`", file=sys.stderr)
            return 1
        if args.action == "show":
            for seq, event in enumerate(events, start=1):
                print(event.model_dump_json() if args.json else views.event_line(seq, event))
            return 0
        if args.action == "replay":
            until = len(events) if args.until is None else args.until
            if not 1 <= until <= len(events):
                print(f"--until must be between 1 and {len(events)} for thread {args.id}", file=sys.stderr)
                return 1
            for seq, event in enumerate(events[:until], start=1):
                print(views.event_line(seq, event))
            print(views.state_summary(replay(events[:until], thread_id=args.id, stored=True)))
            return 0
        trigger = ControlTrigger(
            id=new_id(),
            channel=CHANNEL,
            conversation="",
            sender=settings.cli_identity,
            thread_id=args.id,
            action=args.action,
            reason=args.reason,
        )
        await (wiring.threads.pause(trigger) if args.action == "pause" else wiring.threads.resume(trigger))
        state = await wiring.store.load_state(args.id)
        print(views.thread_line(state))
        return 0


async def evals(settings: Settings, args: argparse.Namespace) -> int:
    """`bot eval`: scenarios through each agent's prompt and model; offline, the recorded answers replayed."""
    from core.evals.harness import run_evals, scenario_files
    from core.evals.models import Live, Replay  # imports the Anthropic SDK, which takes seconds: only here

    tools = load_tools(settings.tools_file, settings.groups)
    prompts = PromptLibrary(settings.prompts_dir)
    roster = build_roster(settings, tools, prompts, lambda prompt: None)
    roster = roster or Roster.single(settings.agent, tools, None, settings.step_limit)
    paths = scenario_files(args.paths or [settings.evals_dir])
    recordings = (paths[0].parent if paths else settings.evals_dir) / "recorded"
    client = anthropic_client(settings)
    if client is None and args.record:
        raise ConfigError("bot eval --record calls the model: set ANTHROPIC_API_KEY")
    if args.record and resources.installed(recordings):
        raise ConfigError(
            "bot eval --record writes the answers beside the scenarios, and these are the ones installed with the "
            "bot: run `bot init DIR` and set BOT_EVALS_DIR to DIR/evals to record your own"
        )
    models: Live | Replay = (
        Live(client, prompts, model=settings.model, record=recordings if args.record else None)
        if client is not None
        else Replay(recordings, prompts, model=settings.model)
    )
    try:
        code = await run_evals(paths, roster, models, sys.stdout, agent=args.agent, min_accuracy=args.min_accuracy)
        for path in models.save() if isinstance(models, Live) else []:
            print(f"recorded the answers in {path}")
        return code
    finally:
        if isinstance(models, Replay):
            await models.aclose()
        if client is not None:
            await client.close()
