"""What `/metrics` (bot/http/admin.py) shows Prometheus: the process's counters plus queue and approval gauges."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from bot.main import Wiring
from core.redis import keys
from core.redis.bus import DEAD_LETTER


async def _gauges(wiring: Wiring) -> bytes:
    registry = CollectorRegistry()
    values = {
        "bot_inbox_length": ("Triggers in the inbox stream", await wiring.redis.xlen(keys.INBOX)),
        "bot_dead_letters_waiting": ("Triggers on the dead-letter stream", await wiring.redis.xlen(DEAD_LETTER)),
        "bot_approvals_pending": ("Approvals waiting for a decision", await wiring.redis.zcard(keys.APPROVAL_INDEX)),
    }
    try:
        pending = await wiring.redis.xpending(keys.INBOX, keys.WORKERS_GROUP)
        values["bot_inbox_in_progress"] = ("Triggers taken by a worker, not yet acknowledged", pending["pending"])
    except Exception:  # noqa: BLE001 - no consumer group yet: nothing is in progress
        values["bot_inbox_in_progress"] = ("Triggers taken by a worker, not yet acknowledged", 0)
    for name, (help_text, value) in values.items():
        Gauge(name, help_text, registry=registry).set(value)
    return generate_latest(registry)


async def exposition(wiring: Wiring) -> tuple[bytes, str]:
    """The Prometheus text: the process's counters, then the gauges read from Redis now."""
    return generate_latest(wiring.metrics.registry) + await _gauges(wiring), CONTENT_TYPE_LATEST
