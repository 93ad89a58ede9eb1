"""The composition root: every client is built here, once, and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.redis_server import EmbeddedRedis
from bot.redis_wait import PROBE_TIMEOUT_SECONDS, wait_for_redis
from config.settings import Settings
from core.domain.ports import ChannelAdapter, Clock, Publisher, SystemClock
from core.domain.schedules import Schedule, load_schedules
from core.model.commands import CommandModel
from core.model.llm import Model
from core.model.prompts import PromptLibrary
from core.obs import failpoints, logs, tracing
from core.obs.metrics import Metrics
from core.redis.asking import Askings
from core.redis.audit import AuditLog
from core.redis.bus import Bus
from core.redis.grants import StoredGrants
from core.redis.limits import RateLimits
from core.redis.locks import Locks
from core.redis.scheduler import Scheduler
from core.redis.store import Store
from core.redis.sweeper import Sweeper
from core.runtime.approvals import Approvals
from core.runtime.asking import ServerQuestions
from core.runtime.budget import budgeted, model_limit
from core.runtime.external import ExternalActions, load_actions
from core.runtime.grants import Grants
from core.runtime.holds import Holds, calendar_for
from core.runtime.loop import Loop
from core.runtime.previews import Previews
from core.runtime.roster import ROUTER, Roster, load_roster
from core.runtime.threads import Threads
from core.runtime.worker import Worker
from core.tools import mcp as mcp_tools
from core.tools.executors import ToolRunner
from core.tools.redact import RedactingFilter, Redactor
from core.tools.registry import ToolRegistry, load_tools

if TYPE_CHECKING:
    import anthropic

    from core.tools.mcp.client import McpClients


@dataclass
class Wiring:
    settings: Settings
    redis: aioredis.Redis
    store: Store
    bus: Bus
    tools: ToolRegistry
    threads: Threads
    redactor: Redactor
    metrics: Metrics
    schedules: list[Schedule] = field(default_factory=list)
    actions: ExternalActions | None = None  # what MCP clients ask approval for (`core.runtime.external`, bot.mcp)
    mcp: McpClients | None = None  # this process's connections to the tools file's MCP servers
    # Answers "the store cannot take this now" (HTTP 503 store_unavailable, /readyz): exported on /metrics
    # beside the core's counters, by where it was answered.
    store_write_failures: Counter = field(init=False)
    rate_limited: Counter = field(init=False)  # requests answered 429 and model calls refused, by limit
    webhook_refusals: Counter = field(init=False)  # webhook deliveries refused, by hook and code

    def __post_init__(self) -> None:
        self.store_write_failures = Counter(
            "bot_store_write_failures",
            "Requests answered 503 because Redis could not be reached or refused writes (full, read-only, loading)",
            ["where"],
            registry=self.metrics.registry,
        )
        self.rate_limited = self.metrics.rate_limited
        self.webhook_refusals = Counter(
            "bot_webhook_refusals",
            "Webhook deliveries refused (bad signature, stale timestamp, replay, ...), by hook and error code",
            ["hook", "reason"],
            registry=self.metrics.registry,
        )

    @property
    def grants(self) -> Grants:
        """Standing grants, as the threads' loop uses them (`bot grants`, the API, the console)."""
        grants = self.threads.loop.grants
        if grants is None:  # a loop built without them (never by `thread_service`)
            grants = Grants(StoredGrants(self.redis), self.tools, self.threads.clock, AuditLog(self.store))
        return grants

    def worker(self, name: str | None = None) -> Worker:
        sweeper = Sweeper(self.store, self.bus, self.tools, self.threads.clock)
        return Worker(self.threads, self.bus, name, sweeper=sweeper)

    def scheduler(self) -> Scheduler | None:
        """Launches due schedules; every worker process runs one, and each tick fires once between them."""
        if not self.schedules:
            return None
        return Scheduler(self.schedules, self.redis, self.bus, self.threads.clock, every=self.settings.schedule_every)


def setup_logging(settings: Settings, redactor: Redactor, level: str | None = None) -> None:
    """Logs on stderr: JSON lines (BOT_LOG_FORMAT=json) or text, with thread context, secrets redacted.

    Also where a process starts tracing, when the standard OTEL_* variables ask for it (`core.obs.tracing`:
    the SDK reads them from the environment itself); without them nothing of OpenTelemetry is imported.
    """
    handler = logging.StreamHandler()
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(RedactingFilter(redactor))
    if settings.log_format == "json":
        handler.setFormatter(logs.JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=(level or settings.log_level).upper(), handlers=[handler], force=True)
    tracing.configure(os.environ)  # once per process; after the handler, so "tracing on" is logged


def redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    if settings.redis_url:
        return settings.redis_url, None
    embedded = EmbeddedRedis(settings.data_dir)
    return embedded.start(), embedded


def redis_client(settings: Settings, url: str, **options: Any) -> aioredis.Redis:
    """The Redis client: a cluster client when REDIS_CLUSTER=1 (every multi-key script's keys share a slot)."""
    if settings.redis_cluster:
        return cast(aioredis.Redis, aioredis.RedisCluster.from_url(url, **options))
    return aioredis.Redis.from_url(url, health_check_interval=30, **options)


def anthropic_client(settings: Settings) -> anthropic.AsyncAnthropic | None:
    if settings.anthropic_api_key is None:
        return None
    import anthropic

    return anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=settings.model_retries,
        timeout=settings.model_timeout,
    )


def language_models(
    settings: Settings,
    prompts: PromptLibrary,
    llm: anthropic.AsyncAnthropic | None,
    injected: Model | None,
    budget: RateLimits | None,
) -> Callable[[str], Model | None]:
    """The model that reads free text with each agent's prompt: Claude with that prompt, or one injected model,
    each spending the requester's model budget (BOT_RATE_MODEL) first, unless it is `off`.

    An injected model (tests, benchmarks) serves every agent but not the router, so free text goes
    straight to the default agent, as it did when there was one agent.
    """

    def language(prompt: str) -> Model | None:
        if injected is not None:
            return None if prompt == ROUTER else budgeted(injected, budget)
        if llm is None:
            return None
        from core.model.anthropic import AnthropicModel

        return budgeted(
            AnthropicModel(
                llm,
                prompts,
                model=settings.model,
                agent=prompt,
                max_tokens=settings.model_max_tokens,
                budget_tokens=settings.context_budget,
            ),
            budget,
        )

    return language


def build_roster(
    settings: Settings, tools: ToolRegistry, prompts: PromptLibrary, language: Callable[[str], Model | None]
) -> Roster | None:
    """The focused agents, the router and the workflows (config/agents.toml); None: one agent, every tool."""
    path = settings.agents_path
    if path is None:
        return None
    return load_roster(path, tools, prompts, default=settings.agent, language=language, step_limit=settings.step_limit)


def thread_service(
    *,
    store: Store,
    publisher: Publisher,
    tools: ToolRegistry,
    runner: ToolRunner,
    roster: Roster,
    command: Model,
    clock: Clock,
    redactor: Redactor,
    metrics: Metrics | None,
    error_limit: int,
    console_url: str = "",
    questions: ServerQuestions | None = None,
    holds: Holds | None = None,
) -> Threads:
    """The thread service and what it works with: approvals for every tool (a stored call runs whoever
    holds the thread), and the loop over the roster's agents with the slash-command model."""
    approvals = Approvals(store, tools, clock, console_url=console_url, previews=Previews(runner))
    loop = Loop(
        store=store,
        tools=tools,
        runner=runner,
        roster=roster,
        command=command,
        approvals=approvals,
        error_limit=error_limit,
        questions=questions,
        holds=holds,
        grants=Grants(StoredGrants(store.redis), tools, clock, AuditLog(store)),
    )
    return Threads(
        store=store,
        publisher=publisher,
        tools=tools,
        loop=loop,
        approvals=approvals,
        roster=roster,
        clock=clock,
        redactor=redactor,
        metrics=metrics,
        questions=questions,
    )


def build_wiring(
    settings: Settings,
    env: Mapping[str, str],
    client: aioredis.Redis,
    *,
    http: aiohttp.ClientSession | None = None,
    llm: anthropic.AsyncAnthropic | None = None,
    language_model: Model | None = None,
    clock: Clock | None = None,
) -> Wiring:
    failpoints.configure(env.get("BOT_FAILPOINTS", ""))  # tests and operators; free when unset
    tools = load_tools(settings.tools_file, settings.groups)
    actions = load_actions(settings.tools_file, tools)  # [mcp_server]: the actions MCP clients ask approval for
    if actions is not None:
        tools = actions.registry(tools)
    redactor = Redactor.from_env(env)
    prompts = PromptLibrary(settings.prompts_dir)
    metrics = Metrics()
    budget = (
        None
        if settings.rate_model == "off"
        else RateLimits(client, model_limit(settings.rate_model), metrics.rate_limited)
    )
    language = language_models(settings, prompts, llm, language_model, budget)
    roster = build_roster(settings, tools, prompts, language)
    schedules_file = settings.schedules_path
    agents = roster.names() if roster is not None else [settings.agent]
    schedules = load_schedules(schedules_file, agents) if schedules_file is not None else []
    store = Store(client, lock_ttl_ms=settings.lock_ttl_ms)
    bus = Bus(client, store, claim_idle_ms=settings.claim_idle_ms, redactor=redactor)
    mcp = mcp_tools.clients(tools, env, logs=settings.data_dir / "mcp")  # stdio servers' stderr, one file each
    runner = ToolRunner(
        workdir=settings.workdir, data_dir=settings.data_dir.resolve(), env=env, redactor=redactor, http=http, mcp=mcp
    )
    threads = thread_service(
        store=store,
        publisher=bus,
        tools=tools,
        runner=runner,
        roster=roster or Roster.single(settings.agent, tools, language(settings.agent), settings.step_limit),
        command=CommandModel(prompts, catalog=roster.catalog if roster is not None else None),
        clock=clock or SystemClock(),
        redactor=redactor,
        metrics=metrics,
        error_limit=settings.error_limit,
        console_url=settings.http.public_url or "",
        # Only MCP servers ask questions during a call; without them no message pays the look before the lease.
        questions=ServerQuestions(Askings(client), bus) if mcp is not None else None,
        holds=Holds(calendar_for(settings.calendar_file, tools), Locks(client), tools, settings.http.public_url or ""),
    )
    if actions is not None:  # the `mcp` agent runs the MCP server's requests; its questions have their answerers
        actions.join(threads.roster, tools)
        threads.answerers = actions.answerer(tools)
    return Wiring(
        settings=settings,
        redis=client,
        store=store,
        bus=bus,
        tools=tools,
        threads=threads,
        redactor=redactor,
        metrics=metrics,
        schedules=schedules,
        actions=actions,
        mcp=mcp,
    )


def channel_adapters(wiring: Wiring, *, http_only: bool = False) -> list[ChannelAdapter]:
    """The chat channels whose settings are present, built on the core's bus and store.

    `http_only`: only the channels that receive over HTTP (Slack with SLACK_SIGNING_SECRET), for the HTTP
    server of a process that does not run them (`bot serve`): their `routes()` enqueue, and nothing connects
    to a gateway or renders an outbox until `run`, which `bot channels` calls.
    """
    adapters: list[ChannelAdapter] = []
    if (slack_settings := wiring.settings.slack) is not None and (
        slack_settings.signing_secret is not None or not http_only
    ):
        from adapters.slack.channel import SlackChannel

        adapters.append(SlackChannel(slack_settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools))
    if http_only:
        return adapters  # Discord (gateway) and email (IMAP) receive in the process that runs them
    if (discord_settings := wiring.settings.discord) is not None:
        from adapters.discord.channel import DiscordChannel, build_client

        client = build_client(
            discord_settings, message_content=discord_settings.message_content, gateway_url=discord_settings.gateway_url
        )
        adapters.append(
            DiscordChannel(discord_settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, client=client)
        )
    if (email_settings := wiring.settings.email) is not None:
        from adapters.email.channel import EmailChannel

        adapters.append(EmailChannel(email_settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools))
    return adapters


def redis_probe(settings: Settings, url: str) -> aioredis.Redis:
    """A client for one start-up PING: no retries of its own, so each attempt is logged and timed by the caller."""
    return redis_client(
        settings,
        url,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=PROBE_TIMEOUT_SECONDS,
        socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
    )


@contextlib.asynccontextmanager
async def running_wiring(
    settings: Settings, env: Mapping[str, str] | None = None, *, wait: bool = False
) -> AsyncIterator[Wiring]:
    """Connect to Redis (starting the embedded one if needed), build the core, and clean up after.

    `wait`: a long-running process waits for a Redis that does not answer yet (BOT_REDIS_WAIT_SECONDS);
    otherwise it fails at once, before anything is shown, with a message that says what to do.
    """
    env = os.environ if env is None else env
    # In a thread: the embedded start waits on a file lock and for the server to come up.
    url, embedded = await asyncio.to_thread(redis_url, settings)
    try:
        patience = (settings.redis_wait_seconds or None) if wait else 0.0
        await wait_for_redis(lambda: redis_probe(settings, url), url, patience)
        client = redis_client(settings, url)
        llm = anthropic_client(settings)
        try:
            async with aiohttp.ClientSession() as http:
                wiring = build_wiring(settings, env, client, http=http, llm=llm)
                try:
                    if wiring.mcp is not None:  # list the MCP servers' tools before the first message
                        await wiring.mcp.start()
                    yield wiring
                finally:
                    if wiring.mcp is not None:
                        await wiring.mcp.aclose()
        finally:
            if llm is not None:
                await llm.close()
            await client.aclose()
    finally:
        if embedded is not None:  # also when the start failed: a server nobody uses is not left running
            embedded.stop_if_last()
