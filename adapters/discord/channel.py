"""The Discord channel: mentions, DMs, the bot's threads, slash commands and approval buttons.

Input is acknowledged within Discord's 3 seconds and enqueued as a trigger (`discord_inbound`);
the `discord` outbox is rendered over REST (`discord_render`), so any logged-in process can
post replies and edit approval cards, and a button works whichever process receives the click.

    channel = DiscordChannel(settings.discord, bus=core.redis.bus, store=core.redis.store, tools=core.tools.registry)
    await channel.run(stop)                 # gateway + outbox; discord.py reconnects by itself
    await sync_commands(settings.discord, core.tools.registry, settings.discord.guild_id)   # on change only
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord.app_commands import tool_commands
from adapters.discord.bot import OpsBot
from adapters.discord.inbound import CHANNEL, Inbound
from adapters.discord.render import Renderer
from adapters.discord.state import DiscordStore
from config.channels import DiscordSettings
from core import Bus, ChannelError, ConfigError, Outbound, Store, ToolRegistry, deliver

log = logging.getLogger(__name__)

__all__ = ["DiscordChannel", "OpsBot", "build_client", "sync_commands"]


def build_client(settings: DiscordSettings, *, message_content: bool = False, gateway_url: str | None = None) -> OpsBot:
    """The discord.py client; `DISCORD_API_BASE` points every REST call (and webhooks) elsewhere.

    discord.py keeps its REST base and its gateway URL on classes, so they apply to every
    client in the process.
    """
    if settings.api_base:
        discord.http.Route.BASE = settings.api_base.rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    return OpsBot(message_content=message_content)


def install_commands(client: OpsBot, tools: ToolRegistry) -> None:
    for command in tool_commands(tools):
        client.tree.add_command(command, override=True)


async def login(client: OpsBot, settings: DiscordSettings) -> None:
    """Log in over REST (no gateway); errors say what to fix."""
    try:
        await client.login(settings.token.get_secret_value())
    except discord.LoginFailure as exc:
        raise ConfigError(
            f"DISCORD_TOKEN was refused by Discord ({exc}); set it to the bot token "
            "from the Developer Portal (Bot > Reset Token)"
        ) from exc
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        where = settings.api_base or discord.http.Route.BASE
        raise ChannelError(
            f"cannot log in to Discord at {where}: {exc}; check DISCORD_API_BASE and the network"
        ) from exc


async def sync_commands(settings: DiscordSettings, tools: ToolRegistry, guild_id: int | None) -> int:
    """Register `/ops` and the tool commands: to one guild (at once) or globally (slow to spread).

    Run it when tools change (`bot discord sync-commands`), not on every start: global syncs
    are rate limited. Returns how many commands are registered.
    """
    client = build_client(settings)
    install_commands(client, tools)
    try:
        await login(client, settings)
        guild = discord.Object(guild_id) if guild_id is not None else None
        if guild is not None:
            client.tree.copy_global_to(guild=guild)
        return len(await client.tree.sync(guild=guild))
    finally:
        await client.close()


class DiscordChannel:
    """Satisfies `core.ChannelAdapter`; renders the `discord` outbox."""

    name = CHANNEL

    def __init__(
        self,
        settings: DiscordSettings,
        *,
        bus: Bus,
        store: Store,
        tools: ToolRegistry,
        client: OpsBot | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.client = client or build_client(settings)
        book = DiscordStore(store.redis)
        self.client.sink = Inbound(bus, book, self.client, store, tools)
        self.renderer = Renderer(self.client, book, settings.approval_channel_id)
        install_commands(self.client, tools)
        self.consumer = f"{CHANNEL}-{socket.gethostname()}-{os.getpid()}"
        self._gateway = False
        self._logged_in = False

    @property
    def healthy(self) -> bool:
        """Logged in, and when running the gateway, connected and ready (false while reconnecting)."""
        if self.client.is_closed() or not self._logged_in:
            return False
        return self.client.gateway_ready if self._gateway else True

    async def login(self) -> None:
        if not self._logged_in:
            await login(self.client, self.settings)
            self._logged_in = True

    async def render(self, outbound: Outbound) -> None:
        """Render one outbox message; failures become ChannelError (the bus retries, then parks it)."""
        try:
            await self.renderer.render(outbound)
        except discord.RateLimited as exc:  # longer than the client waits itself (RATE_LIMIT_WAIT_SECONDS)
            raise ChannelError(
                f"Discord rate-limited {outbound.kind} {outbound.id} for {exc.retry_after:.0f}s; retrying then",
                retry_after=exc.retry_after,
            ) from exc
        except discord.Forbidden as exc:
            raise ChannelError(
                f"Discord refused {outbound.kind} {outbound.id} ({exc.text}); give the bot Send "
                "Messages, Send Messages in Threads and Create Public Threads there"
            ) from exc
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            raise ChannelError(f"Discord failed on {outbound.kind} {outbound.id}: {exc}") from exc

    async def run(self, stop: asyncio.Event, *, gateway: bool = True) -> None:
        """Until `stop`: the gateway (input; discord.py reconnects) and the outbox delivery loop.

        With `gateway=False` only the outbox is rendered, over REST: a second process can do that.
        """
        await self.login()
        self._gateway = gateway
        halt = asyncio.Event()  # ends the delivery loop after the message it is rendering
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(stop.wait(), name="discord-stop"),
            asyncio.create_task(deliver(self.bus, self.name, self.render, halt, self.consumer), name="discord-outbox"),
        ]
        if gateway:
            tasks.append(asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway"))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)  # stop, or a part gave up
        finally:
            halt.set()
            await self.close()  # ends the gateway task
            tasks[0].cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, discord.PrivilegedIntentsRequired):
                raise ConfigError(
                    "Discord refused the message-content intent; enable it for the bot in the "
                    "Developer Portal (Bot > Privileged Gateway Intents) or turn it off"
                ) from outcome
            if isinstance(outcome, Exception):
                raise ChannelError(f"the Discord channel stopped: {outcome}") from outcome

    async def close(self) -> None:
        self._gateway = False
        try:
            await self.client.close()
        except Exception as exc:  # noqa: BLE001 - closing must not hide why we stopped
            log.warning("discord: closing the client failed: %s", exc)
