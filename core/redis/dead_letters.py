"""The dead-letter stream (`inbox:dead`) for operators: read it a page at a time, send an entry back.

A trigger lands there when it crashed a worker or was taken over too often (`core/runtime/worker.py`,
`core/redis/bus.py`). After the cause is fixed, `retry` publishes it to the inbox again, once: the
re-publish carries the dedup key `dead-letter:<id>`, so two operators retrying the same letter
enqueue it once, and the letter is removed after it is back on the inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.domain.events import TRIGGER_ADAPTER, Trigger
from core.redis.bus import DEAD_LETTER, Bus
from core.redis.store import redis_errors


@dataclass(frozen=True)
class DeadLetter:
    id: str  # its id on the dead-letter stream
    entry: str  # the inbox entry it was
    trigger: str  # the trigger's JSON, secrets redacted
    error: str  # why it was parked


class NoDeadLetter(LookupError):
    pass


class NotATrigger(ValueError):
    """The letter's payload never was a valid trigger (a malformed publish): send it again from its source."""


def _s(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class DeadLetters:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.redis = bus.redis

    async def page(self, limit: int, before: str = "") -> tuple[list[DeadLetter], str]:
        """Newest first; the second value is the `before` of the next page ("" at the end)."""
        with redis_errors():
            rows: Any = await self.redis.xrevrange(DEAD_LETTER, f"({before}" if before else "+", "-", count=limit + 1)
        letters = [
            DeadLetter(
                id=_s(entry_id),
                entry=_s(fields.get(b"entry", b"")),
                trigger=_s(fields.get(b"t", b"")),
                error=_s(fields.get(b"error", b"")),
            )
            for entry_id, fields in rows[:limit]
        ]
        return letters, letters[-1].id if len(rows) > limit else ""

    async def retry(self, letter_id: str) -> tuple[Trigger, bool]:
        """Publish the letter's trigger again and remove the letter; False when it was already sent back."""
        with redis_errors():
            found: Any = await self.redis.xrange(DEAD_LETTER, letter_id, letter_id)
        if not found:
            raise NoDeadLetter(letter_id)
        try:
            trigger = TRIGGER_ADAPTER.validate_json(found[0][1].get(b"t", b""))
        except ValidationError as exc:
            raise NotATrigger(letter_id) from exc
        fresh = await self.bus.publish(trigger.model_copy(update={"dedup_key": f"dead-letter:{letter_id}"}))
        with redis_errors():
            await self.redis.xdel(DEAD_LETTER, letter_id)
        return trigger, fresh
