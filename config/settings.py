"""One settings object, read once from the environment in `bot/` and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from config import resources
from config.channels import DiscordSettings, EmailSettings, HttpSettings, SlackSettings, env_values, validated

CONFIG_DIR = resources.config_dir()
GROUP_PREFIX = "BOT_GROUP_"


def _default_cli_user() -> str:
    return "operator"


class Settings(BaseModel):
    """Each field's alias is the environment variable that sets it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    redis_url: str | None = Field(None, alias="REDIS_URL")
    redis_cluster: bool = Field(False, alias="REDIS_CLUSTER")  # REDIS_URL names a node of a Redis Cluster
    # How long a long-running process (worker, serve, run, channels) waits at start for Redis; 0: forever.
    redis_wait_seconds: float = Field(0.0, ge=0, alias="BOT_REDIS_WAIT_SECONDS")
    data_dir: Path = Field(Path(".bot"), alias="BOT_DATA_DIR")
    tools_file: Path = Field(CONFIG_DIR / "tools.toml", alias="BOT_TOOLS_FILE")
    hooks_file: Path = Field(CONFIG_DIR / "hooks.toml", alias="BOT_HOOKS_FILE")
    agents_file: Path | None = Field(None, alias="BOT_AGENTS_FILE")
    schedules_file: Path | None = Field(None, alias="BOT_SCHEDULES_FILE")
    # Change freezes and allowed windows for gated tools; a missing file declares none.
    calendar_file: Path = Field(CONFIG_DIR / "calendar.toml", alias="BOT_CALENDAR_FILE")
    evals_dir: Path = Field(default_factory=resources.evals_dir, alias="BOT_EVALS_DIR")
    schedule_every: float = Field(20.0, gt=0, alias="BOT_SCHEDULE_EVERY")
    prompts_dir: Path = Field(default_factory=resources.prompts_dir, alias="BOT_PROMPTS_DIR")
    # Where command tools run: the current directory (the shipped tools are modules, found anywhere).
    workdir: Path = Field(default_factory=Path.cwd, alias="BOT_WORKDIR")
    agent: str = Field("deploybot", alias="BOT_AGENT")
    anthropic_api_key: SecretStr | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    model: str = Field("claude-sonnet-4-6", alias="BOT_MODEL")
    model_max_tokens: int = Field(1024, gt=0, alias="BOT_MODEL_MAX_TOKENS")
    model_retries: int = Field(3, ge=0, alias="BOT_MODEL_RETRIES")
    model_timeout: float = Field(60.0, gt=0, alias="BOT_MODEL_TIMEOUT")
    # Model calls each requester may make (core/runtime/budget.py), in the `limits` notation; past it threads wait.
    # `off`: no budget (a free model, e.g. a benchmark's scripted one).
    rate_model: str = Field("300/hour", alias="BOT_RATE_MODEL")
    cli_user: str = Field(default_factory=_default_cli_user, alias="BOT_CLI_USER")
    step_limit: int = Field(12, gt=0, alias="BOT_STEP_LIMIT")
    error_limit: int = Field(3, gt=0, alias="BOT_ERROR_LIMIT")
    context_budget: int = Field(8000, gt=500, alias="BOT_CONTEXT_TOKENS")
    log_level: str = Field("INFO", alias="BOT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="BOT_LOG_FORMAT")
    lock_ttl_ms: int = Field(30_000, ge=100, alias="BOT_LOCK_TTL_MS")
    claim_idle_ms: int = Field(60_000, ge=100, alias="BOT_CLAIM_IDLE_MS")
    groups: dict[str, list[str]] = {}
    http: HttpSettings = Field(default_factory=lambda: HttpSettings.model_validate({}))
    slack: SlackSettings | None = None
    discord: DiscordSettings | None = None
    email: EmailSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; errors name the variable and the fix."""
        values = env_values(cls, env)
        values["groups"] = {
            key.removeprefix(GROUP_PREFIX).lower(): [m.strip() for m in value.split(",") if m.strip()]
            for key, value in env.items()
            if key.startswith(GROUP_PREFIX)
        }
        values["http"] = validated(HttpSettings, env_values(HttpSettings, env))
        values["slack"] = SlackSettings.from_env(env)
        values["discord"] = DiscordSettings.from_env(env)
        values["email"] = EmailSettings.from_env(env)
        return validated(cls, values)

    @field_validator("rate_model")
    @classmethod
    def _rate(cls, value: str) -> str:
        from core.redis.limits import check_rate  # here: settings load without the limits library imported

        return value if value == "off" else check_rate(value)

    @property
    def has_model(self) -> bool:
        return self.anthropic_api_key is not None

    @property
    def cli_identity(self) -> str:
        return f"cli:{self.cli_user}"

    @property
    def agents_path(self) -> Path | None:
        """The agents file in force, or None for one agent (BOT_AGENT) with every tool.

        The shipped config/agents.toml names the shipped tools, so it applies with the shipped
        tools file; with another BOT_TOOLS_FILE, set BOT_AGENTS_FILE to an agents file for it.
        """
        if self.agents_file is not None:
            return self.agents_file
        shipped = self.tools_file.resolve() == (CONFIG_DIR / "tools.toml").resolve()
        return CONFIG_DIR / "agents.toml" if shipped else None

    @property
    def schedules_path(self) -> Path | None:
        """The schedules file in force: BOT_SCHEDULES_FILE, else the shipped one with the shipped agents."""
        if self.schedules_file is not None:
            return self.schedules_file
        return CONFIG_DIR / "schedules.toml" if self.agents_path == CONFIG_DIR / "agents.toml" else None
