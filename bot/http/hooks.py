"""Webhook triggers: `POST /v1/hooks/{name}` launches the hook's agent with the payload in its input.

- Definitions are data (`config/hooks.toml`): agent, input template, reply channel. Secrets come
  only from the environment, `BOT_HOOK_SECRET_<NAME>`; a hook without its secret is disabled.
- Each hook verifies one signature scheme (`scheme` in hooks.toml):
  - `github` (default): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` and a
    delivery id, `X-GitHub-Delivery` (or `X-Delivery-Id`), which is required and remembered for a
    day: a replay of an accepted delivery is 409 `replayed`. GitHub's scheme has no timestamp, so
    a replay after that day would be accepted again: use `standard` where the sender can.
  - `standard`: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64>`
    over `id.timestamp.body`, the secret a `whsec_<base64>` value), verified by the
    `standardwebhooks` reference library: a timestamp more than 5 minutes off is refused, and a
    replayed id inside that window is 409 `replayed`.
  Checks, in order: unknown hook 404, body too large 413, bad or missing signature or delivery id
  401/400, stale timestamp 401, replay 409, payload that does not fill the template 422; only then
  is a trigger enqueued. Every refusal is counted (`bot_webhook_refusals_total{hook,reason}`).
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi import Path as PathParam
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from bot.http.errors import ApiError, responses
from bot.http.ops import Operations
from bot.http.schemas import MAX_TEXT, NAME_PATTERN, Accepted
from core.domain import events as ev
from core.domain.errors import ConfigError
from core.domain.ids import new_id, thread_id_for
from core.domain.toml_file import load_toml, validated
from core.model.commands import parse_decision

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
    scheme: Literal["github", "standard"] = "github"
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
    raw = load_toml(path, "hooks file")  # optional: a missing file reads as empty
    hooks: dict[str, Hook] = {}
    for name, body in raw.get("hooks", {}).items():
        secret_name = SECRET_PREFIX + str(name).upper()
        if "secret" in body:
            raise ConfigError(f"hook {name!r} in {path} has a secret in the file; remove it and set {secret_name}")
        fields = {"name": name, **body, "secret": env.get(secret_name) or None}
        hook = validated(Hook, fields, f"hook {name!r} in {path}", fix=f"fix [hooks.{name}]")
        if hook.secret is None:
            log.warning("hook %s is disabled: set %s to enable it", name, secret_name)
        elif hook.scheme == "standard":
            try:
                Webhook(hook.secret.get_secret_value())
            except Exception as exc:  # noqa: BLE001 - any undecodable secret is the same config error
                raise ConfigError(
                    f"hook {name!r} uses scheme = 'standard', so {secret_name} must be the sender's "
                    f"whsec_<base64> secret ({type(exc).__name__}); copy it as the sender shows it"
                ) from None
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


def _verify_github(hook: Hook, body: bytes, given: str | None, delivery: str | None) -> str:
    """Check GitHub's signature; returns the delivery id, which this scheme requires."""
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
    if not delivery:
        raise ApiError(
            400,
            "delivery_id_required",
            "send a unique X-GitHub-Delivery (or X-Delivery-Id) header with each delivery (GitHub does); "
            "it is what makes a replayed request harmless",
        )
    return delivery


def _verify_standard(hook: Hook, body: bytes, headers: Mapping[str, str]) -> str:
    """Check a Standard Webhooks signature and timestamp; returns the message id."""
    assert hook.secret is not None
    wanted = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    if not all(wanted.values()):
        missing = ", ".join(name for name, value in wanted.items() if not value)
        raise ApiError(401, "bad_signature", f"missing {missing}; hook {hook.name} uses Standard Webhooks")
    try:
        Webhook(hook.secret.get_secret_value()).verify(body, wanted, json_parse=False)
    except WebhookVerificationError as exc:
        if "timestamp too" in str(exc):
            raise ApiError(
                401,
                "stale_timestamp",
                f"webhook-timestamp {wanted['webhook-timestamp']} is more than 5 minutes from now ({exc}); "
                "a delayed or replayed delivery is refused: send a fresh one, and check the sender's clock",
            ) from None
        raise ApiError(
            401,
            "bad_signature",
            f"webhook-signature does not match id.timestamp.body ({exc}); sign with the secret in "
            f"{hook.secret_variable}",
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(401, "bad_signature", f"the signature headers or the body cannot be read ({exc})") from None
    return wanted["webhook-id"]


def _payload(hook: Hook, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ApiError(422, "payload_mismatch", f"hook {hook.name} expects a JSON object as the body")
    return payload


HOOK_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


def hooks_router(ops: Operations, hooks: HookConfig, refusals: Counter | None = None) -> APIRouter:
    """`refusals`: counts refused deliveries by hook and error code (`Wiring.webhook_refusals`)."""
    router = APIRouter(prefix="/v1/hooks", tags=["webhooks"])

    @router.post(
        "/{name}",
        status_code=202,
        response_model=Accepted,
        responses=responses(400, 401, 404, 409, 413, 422, 503),
        summary="Launch the hook's agent with the signed payload",
        openapi_extra={"requestBody": HOOK_BODY},
    )
    async def hook(
        name: Annotated[str, PathParam(max_length=64)],
        request: Request,
        x_hub_signature_256: Annotated[str | None, Header(description="sha256=<hex HMAC-SHA256 of the body>")] = None,
        x_github_delivery: Annotated[str | None, Header(max_length=200)] = None,
        x_delivery_id: Annotated[str | None, Header(max_length=200)] = None,
        webhook_id: Annotated[str | None, Header(max_length=200, description="Standard Webhooks")] = None,
    ) -> Accepted:
        found = hooks.enabled(name)
        if found is None:
            raise ApiError(
                404, "hook_not_found", f"there is no enabled hook {name!r}; define it in hooks.toml and set its secret"
            )
        try:
            return await _deliver(found, request, x_hub_signature_256, x_github_delivery or x_delivery_id)
        except ApiError as exc:
            if refusals is not None:
                refusals.labels(found.name, exc.code).inc()
            raise

    async def _deliver(found: Hook, request: Request, given: str | None, github_delivery: str | None) -> Accepted:
        body = await _read_body(request)
        if found.scheme == "standard":
            delivery = _verify_standard(found, body, request.headers)
        else:
            delivery = _verify_github(found, body, given, github_delivery)
        text = render(found, _payload(found, body))
        conversation = f"hook/{found.name}/{delivery}"  # a redelivery names the same thread
        trigger = ev.MessageTrigger(
            id=new_id(),
            channel=found.channel,
            conversation=conversation,
            sender=f"hook:{found.name}",
            text=text,
            agent=found.agent,
            reply_to=found.reply_to,
            thread_id=thread_id_for(found.channel, conversation),
            dedup_key=f"hook:{found.name}:{delivery}",
        )
        accepted = await ops.launch(trigger, new_thread=False)
        if accepted.duplicate:
            raise ApiError(
                409,
                "replayed",
                f"delivery {delivery!r} of hook {found.name} was accepted before (thread {accepted.thread_id}); "
                "a replay is refused and nothing was enqueued. Send a new delivery id for a new event",
            )
        return accepted

    return router
