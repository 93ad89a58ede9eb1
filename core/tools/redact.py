"""Secret redaction: secret values never reach events, logs or prompts."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel

SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_API_KEY", "_KEY")
SECRET_PREFIXES = ("BOT_HOOK_SECRET_",)  # one per webhook: BOT_HOOK_SECRET_<NAME>
TOKEN_LISTS = ("BOT_API_TOKENS",)  # "token=identity,...": each token is a secret, the identities are not
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words

M = TypeVar("M", bound=BaseModel)


def secret_names(env: Mapping[str, str], extra: Iterable[str] = ()) -> set[str]:
    """Environment variables that hold secrets: by naming convention, plus any the tools name."""
    names = {name for name in env if name.upper().endswith(SECRET_SUFFIXES) or name.upper().startswith(SECRET_PREFIXES)}
    return names | {name for name in extra if name in env}


class Redactor:
    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        pairs = [(value, name) for name, value in secrets.items() if len(value) >= MIN_SECRET_LENGTH]
        self._pairs = sorted(pairs, key=lambda pair: -len(pair[0]))

    @classmethod
    def from_env(cls, env: Mapping[str, str], extra: Iterable[str] = ()) -> Redactor:
        secrets = {name: env[name] for name in secret_names(env, extra)}
        for name in TOKEN_LISTS:
            for position, item in enumerate(env.get(name, "").split(","), start=1):
                if token := item.partition("=")[0].strip():
                    secrets[f"{name}#{position}"] = token
        return cls(secrets)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def text(self, value: str) -> str:
        for secret, name in self._pairs:
            if secret in value:
                value = value.replace(secret, f"[redacted:{name}]")
        return value

    def model(self, item: M) -> M:
        """Return `item` with every secret in its string fields replaced."""
        return self.encode(item)[0] if self._pairs else item

    def encode(self, item: M) -> tuple[M, str]:
        """`item` redacted, and its JSON: serialized once, for what is stored."""
        raw = item.model_dump_json()
        clean = raw
        for secret, name in self._pairs:
            escaped = json.dumps(secret)[1:-1]
            if escaped in clean:
                clean = clean.replace(escaped, f"[redacted:{name}]")
        return (item, raw) if clean is raw else (type(item).model_validate_json(clean), clean)


class RedactingFilter(logging.Filter):
    """Redacts secrets from every log record that passes through the handler."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.text(record.getMessage())
        record.args = None
        return True
