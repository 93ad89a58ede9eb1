"""Webhook triggers: `POST /v1/hooks/{name}` launches the hook's agent with the payload in its input.

- Definitions are data (`config/hooks.toml`): agent, input template, reply channel. Secrets come
  only from the environment, `BOT_HOOK_SECRET_<NAME>`; a hook without its secret is disabled.
- The body must carry `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` (GitHub's
  header, so GitHub webhooks work as they are). Checks, in order: unknown hook 404, body too
  large 413, bad signature 401, payload that does not fill the template 422; only then is a
  trigger enqueued. `X-GitHub-Delivery` or `X-Delivery-Id`, when sent, drops redeliveries.
- `{field}` / `{a.b}` in the template take values from the JSON payload. In a `/command` template
  each value is shell-quoted, so a payload can fill an argument but never add one; and a hook's
  input may never read as `approve <id>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from bot.http_errors import ApiError, responses
from bot.http_models import MAX_TEXT, NAME_PATTERN, Accepted
from bot.http_ops import Operations
from core import events as ev
from core.commands import parse_decision
from core.errors import ConfigError
from core.ids import new_id, thread_id_for

log = logging.getLogger(__name__)

SECRET_PREFIX = "BOT_HOOK_SECRET_"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY_BYTES = 256 * 1024
MAX_VALUE_CHARS = 500
FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


class Hook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    agent: str = ""
    channel: str = Field("api", pattern=NAME_PATTERN)
    reply_to: dict[str, str] = {}
    secret: SecretStr | None = None

    @property
    def secret_variable(self) -> str:
        return SECRET_PREFIX + self.name.upper()


@dataclass(frozen=True)
class HookConfig:
    hooks: Mapping[str, Hook] = field(default_factory=dict)

    def enabled(self, name: str) -> Hook | None:
        hook = self.hooks.get(name)
        return hook if hook is not None and hook.secret is not None else None


def load_hooks(path: Path, env: Mapping[str, str]) -> HookConfig:
    """Read hook definitions and their secrets; a missing file means no hooks."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return HookConfig()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"hooks file {path} is not valid TOML: {exc}") from exc
    hooks: dict[str, Hook] = {}
    for name, body in raw.get("hooks", {}).items():
        secret_name = SECRET_PREFIX + str(name).upper()
        if "secret" in body:
            raise ConfigError(f"hook {name!r} in {path} has a secret in the file; remove it and set {secret_name}")
        try:
            hook = Hook.model_validate({"name": name, **body, "secret": env.get(secret_name) or None})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"hook {name!r} in {path}: {where}: {first['msg']}; fix [hooks.{name}]") from exc
        if hook.secret is None:
            log.warning("hook %s is disabled: set %s to enable it", name, secret_name)
        hooks[name] = hook
    return HookConfig(hooks)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _lookup(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def render(hook: Hook, payload: Mapping[str, Any]) -> str:
    """The hook's text with payload values in place; ApiError 422 when a field is missing."""
    command = hook.text.lstrip().startswith("/")

    def fill(match: re.Match[str]) -> str:
        try:
            value = _lookup(payload, match.group(1))
        except KeyError:
            raise ApiError(
                422,
                "payload_mismatch",
                f"the payload has no field {match.group(1)!r}, which hook "
                f"{hook.name}'s text needs; send it or change [hooks.{hook.name}].text",
            ) from None
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        text = " ".join(text.split())[:MAX_VALUE_CHARS]
        return shlex.quote(text) if command else text

    rendered = FIELD.sub(fill, hook.text)[:MAX_TEXT]
    if parse_decision(rendered) is not None:
        raise ApiError(
            422,
            "payload_mismatch",
            f"hook {hook.name}'s input reads as an approval decision; webhooks cannot decide approvals",
        )
    return rendered


async def _read_body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes; send a smaller payload")
        chunks.append(chunk)
    return b"".join(chunks)


def _verify(hook: Hook, body: bytes, given: str | None) -> None:
    assert hook.secret is not None
    if not given:
        raise ApiError(
            401,
            "bad_signature",
            f"missing {SIGNATURE_HEADER}; sign the raw body with HMAC-SHA256 "
            f"and the hook's secret ({hook.secret_variable}): sha256=<hex>",
        )
    if not hmac.compare_digest(signature(hook.secret.get_secret_value(), body).encode(), given.encode()):
        raise ApiError(
            401,
            "bad_signature",
            f"{SIGNATURE_HEADER} does not match the body; sign the exact bytes "
            f"sent, with the secret in {hook.secret_variable}",
        )


def _payload(hook: Hook, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ApiError(422, "payload_mismatch", f"hook {hook.name} expects a JSON object as the body")
    return payload


HOOK_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


def hooks_router(ops: Operations, hooks: HookConfig) -> APIRouter:
    router = APIRouter(prefix="/v1/hooks", tags=["webhooks"])

    @router.post(
        "/{name}",
        status_code=202,
        response_model=Accepted,
        responses=responses(401, 404, 413, 422, 503),
        summary="Launch the hook's agent with the signed payload",
        openapi_extra={"requestBody": HOOK_BODY},
    )
    async def hook(
        name: Annotated[str, PathParam(max_length=64)],
        request: Request,
        x_hub_signature_256: Annotated[str | None, Header(description="sha256=<hex HMAC-SHA256 of the body>")] = None,
        x_github_delivery: Annotated[str | None, Header(max_length=200)] = None,
        x_delivery_id: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Accepted:
        found = hooks.enabled(name)
        if found is None:
            raise ApiError(
                404, "hook_not_found", f"there is no enabled hook {name!r}; define it in hooks.toml and set its secret"
            )
        body = await _read_body(request)
        _verify(found, body, x_hub_signature_256)
        text = render(found, _payload(found, body))
        delivery = x_github_delivery or x_delivery_id
        conversation = f"hook/{found.name}/{delivery or new_id()}"  # a redelivery names the same thread
        trigger = ev.MessageTrigger(
            id=new_id(),
            channel=found.channel,
            conversation=conversation,
            sender=f"hook:{found.name}",
            text=text,
            agent=found.agent,
            reply_to=found.reply_to,
            thread_id=thread_id_for(found.channel, conversation),
            dedup_key=f"hook:{found.name}:{delivery}" if delivery else "",
        )
        return await ops.launch(trigger, new_thread=False)

    return router
