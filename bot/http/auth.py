"""Bearer tokens: `BOT_API_TOKENS="token=identity,..."`; each token acts as one identity.

Identities are the same as in chat (`web:alice`, `slack:T1:U1`), so approval permissions apply
to the API exactly as they do to chat.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bot.http.errors import ApiError
from core.domain.errors import ConfigError
from core.redis.limits import RateLimits

IDENTITY = re.compile(r"^[a-z][a-z0-9_-]*:\S+$")
MIN_TOKEN_CHARS = 16
CHALLENGE = {"WWW-Authenticate": "Bearer"}

bearer = HTTPBearer(auto_error=False, description="a token from BOT_API_TOKENS")


def parse_tokens(raw: str) -> dict[str, str]:
    """`token=identity,token2=identity2` -> {token: identity}; errors name the entry (never the token)."""
    tokens: dict[str, str] = {}
    for position, item in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not item:
            continue
        token, sep, identity = (part.strip() for part in item.partition("="))
        where = f"BOT_API_TOKENS entry {position}"
        if not sep or not IDENTITY.match(identity):
            raise ConfigError(f"{where} is not `token=identity` with an identity like web:alice; fix it")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where} ({identity}): the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                "random ones, e.g. from `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`"
            )
        if token in tokens:
            raise ConfigError(f"{where} ({identity}) repeats the token of {tokens[token]}; give each its own")
        tokens[token] = identity
    return tokens


def local_token(identity: str) -> dict[str, str]:
    """A one-process token, for `bot run` without BOT_API_TOKENS: whoever started the bot owns its console."""
    return {secrets.token_urlsafe(24): identity}


class TokenAuth:
    """The FastAPI dependency that turns `Authorization: Bearer <token>` into an identity."""

    def __init__(self, tokens: Mapping[str, str], limits: RateLimits | None = None) -> None:
        self._tokens = [(token.encode(), identity) for token, identity in tokens.items()]
        self.limits = limits

    def identity(self, presented: str) -> str | None:
        """Compare with every token in constant time, so timing says nothing about which one is close."""
        found = None
        for token, identity in self._tokens:
            if hmac.compare_digest(token, presented.encode()):
                found = identity
        return found

    def refusal(self, presented: str | None) -> ApiError | None:
        """Why a request with this bearer token (None: no `Authorization: Bearer`) is refused, if it is."""
        return self._resolve(presented)[1]

    def _resolve(self, presented: str | None) -> tuple[str, ApiError | None]:
        """The token's identity, or why it is refused: one constant-time pass over the tokens."""
        if not self._tokens:
            return "", ApiError(
                401, "unauthorized", "no API tokens are configured; set BOT_API_TOKENS=token=identity", CHALLENGE
            )
        if presented is None:
            return "", ApiError(
                401, "unauthorized", "send `Authorization: Bearer <token>` with a token from BOT_API_TOKENS", CHALLENGE
            )
        identity = self.identity(presented)
        if identity is None:
            return "", ApiError(401, "unauthorized", "the bearer token is not in BOT_API_TOKENS; check it", CHALLENGE)
        return identity, None

    async def __call__(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        """The identity, one call counted against its `identity` limit."""
        identity = await self.known(credentials)
        if self.limits is not None and (over := await self.limits.hit("identity", identity)):
            raise ApiError(429, "rate_limited", over.message, {"Retry-After": str(over.retry_after)})
        return identity

    async def known(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        """The identity, nothing counted: for launches, which count against their own, stricter `launch` limit."""
        identity, refused = self._resolve(credentials.credentials if credentials else None)
        if refused is not None:
            raise refused
        return identity
