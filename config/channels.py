"""Settings of the HTTP server and of each channel; a channel is on when its credentials are set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from core.domain.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def env_values(model: type[BaseModel], env: Mapping[str, str]) -> dict[str, Any]:
    """The fields of `model` that the environment sets (by alias), ignoring empty values."""
    return {
        name: env[field.alias]
        for name, field in model.model_fields.items()
        if field.alias and env.get(field.alias, "") != ""
    }


def validated(model: type[M], values: Mapping[str, Any]) -> M:
    """Validate, turning errors into one ConfigError that names each variable and says to fix it."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = model.model_fields.get(str(error["loc"][0]))
            name = field.alias if field and field.alias else ".".join(str(part) for part in error["loc"])
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise ConfigError("invalid environment: " + "; ".join(problems) + "; fix or unset it") from exc


class _ChannelSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")
    SWITCH: ClassVar[str] = ""  # the variable whose presence turns the channel on

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Any:
        return validated(cls, env_values(cls, env)) if env.get(cls.SWITCH) else None


class HttpSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    host: str = Field("127.0.0.1", alias="BOT_HTTP_HOST")
    port: int = Field(8080, ge=0, le=65535, alias="BOT_HTTP_PORT")  # 0 picks a free port
    public_url: str | None = Field(None, alias="BOT_PUBLIC_URL")
    # "token=identity,token2=identity2": bearer tokens for the REST API and who they act as.
    api_tokens: SecretStr | None = Field(None, alias="BOT_API_TOKENS")
    # Every request body, chunked or not, is cut off at this size (413) and must arrive within this time (408).
    max_body_bytes: int = Field(1024 * 1024, ge=1024, alias="BOT_HTTP_MAX_BODY_BYTES")
    body_seconds: float = Field(30.0, gt=0, alias="BOT_HTTP_BODY_SECONDS")
    # Request heads (bot/http/guard.py): the names and values of all headers and their number (431), and the
    # time the request line and headers may take to arrive (408). h11 refuses a head over 4x the bytes (400).
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=256 * 1024, alias="BOT_HTTP_MAX_HEADER_BYTES")
    max_headers: int = Field(100, ge=10, le=1000, alias="BOT_HTTP_MAX_HEADERS")
    header_seconds: float = Field(10.0, gt=0, alias="BOT_HTTP_HEADER_SECONDS")
    # JSON bodies nested deeper than this are refused (422 json_too_deep) before anything parses them.
    max_json_depth: int = Field(32, ge=2, le=200, alias="BOT_HTTP_MAX_JSON_DEPTH")
    # The bodies one process holds at once, all requests together: past it a body is refused (503, retry).
    body_budget_bytes: int = Field(8 * 1024 * 1024, ge=1024 * 1024, alias="BOT_HTTP_BODY_BUDGET_BYTES")
    # Rate limits (bot/http/limits.py), in the `limits` notation: "60/minute", "10/second", "1000 per hour".
    rate_address: str = Field("1200/minute", alias="BOT_RATE_ADDRESS")
    rate_identity: str = Field("600/minute", alias="BOT_RATE_IDENTITY")
    rate_launch: str = Field("60/minute", alias="BOT_RATE_LAUNCH")

    @field_validator("rate_address", "rate_identity", "rate_launch")
    @classmethod
    def _rate(cls, value: str) -> str:
        from core.redis.limits import check_rate  # here: settings load without the limits library imported

        return check_rate(value)


class SlackSettings(_ChannelSettings):
    SWITCH: ClassVar[str] = "SLACK_BOT_TOKEN"
    bot_token: SecretStr = Field(alias="SLACK_BOT_TOKEN")
    app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")  # set: Socket Mode
    signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")  # HTTP mode
    api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    approval_channel: str | None = Field(None, alias="SLACK_APPROVAL_CHANNEL")  # default: the request's thread
    command: str = Field("/ops", alias="SLACK_COMMAND")


class DiscordSettings(_ChannelSettings):
    SWITCH: ClassVar[str] = "DISCORD_TOKEN"
    token: SecretStr = Field(alias="DISCORD_TOKEN")
    api_base: str | None = Field(None, alias="DISCORD_API_BASE")  # default: discord.py's https://discord.com/api/v10
    guild_id: int | None = Field(None, alias="DISCORD_GUILD_ID")  # sync commands to one guild while developing
    approval_channel_id: int | None = Field(None, alias="DISCORD_APPROVAL_CHANNEL_ID")
    # Privileged: lets people talk in the bot's threads without mentioning it; enable it in the portal first.
    message_content: bool = Field(False, alias="DISCORD_MESSAGE_CONTENT")
    # default: discord.py's wss://gateway.discord.gg/
    gateway_url: str | None = Field(None, alias="DISCORD_GATEWAY_URL")


class EmailSettings(_ChannelSettings):
    SWITCH: ClassVar[str] = "BOT_EMAIL_ADDRESS"
    address: str = Field(alias="BOT_EMAIL_ADDRESS")  # the bot's mailbox, e.g. ops-bot@example.com
    imap_host: str = Field("127.0.0.1", alias="IMAP_HOST")
    imap_port: int = Field(993, ge=0, le=65535, alias="IMAP_PORT")
    imap_user: str | None = Field(None, alias="IMAP_USER")
    imap_password: SecretStr | None = Field(None, alias="IMAP_PASSWORD")
    imap_tls: Literal["implicit", "none"] = Field("implicit", alias="IMAP_TLS")
    imap_mailbox: str = Field("INBOX", alias="IMAP_MAILBOX")
    smtp_host: str = Field("127.0.0.1", alias="SMTP_HOST")
    smtp_port: int = Field(587, ge=0, le=65535, alias="SMTP_PORT")
    smtp_user: str | None = Field(None, alias="SMTP_USER")
    smtp_password: SecretStr | None = Field(None, alias="SMTP_PASSWORD")
    smtp_tls: Literal["starttls", "implicit", "none"] = Field("starttls", alias="SMTP_TLS")
    token_secret: SecretStr | None = Field(None, alias="EMAIL_TOKEN_SECRET")  # HMAC key for approval reply tokens
    trusted_authserv_id: str | None = Field(None, alias="EMAIL_TRUSTED_AUTHSERV_ID")
    require_dmarc: bool = Field(False, alias="EMAIL_REQUIRE_DMARC")
    timezone: str = Field("UTC", alias="EMAIL_TIMEZONE")  # IANA zone of the times written in mail
