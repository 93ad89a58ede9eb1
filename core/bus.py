"""The inbox and outbox streams between channels and workers.

Adapters publish `Trigger`s to `inbox` (one consumer group of workers); workers publish
`Outbound`s to `outbox:<channel>`; each channel reads its own outbox with a consumer group,
so a message is rendered once even with several channel processes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import ValidationError

from core import keys
from core.events import OUTBOUND_ADAPTER, TRIGGER_ADAPTER, Outbound, Trigger
from core.store import Store, redis_errors

log = logging.getLogger(__name__)

DEAD_LETTER = "inbox:dead"
RENDER_ATTEMPTS = 3

# Claim the dedup key and enqueue in one step: no outage can fall between the two.
_PUBLISH = """
if ARGV[1] == '1' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[4])
return 1
"""

# Reset the idle time of an entry its consumer is still working on (JUSTID: the delivery count stays).
_KEEP = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if pending[1] == nil or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""


async def _ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Bus:
    def __init__(self, client: aioredis.Redis, store: Store, claim_idle_ms: int = keys.CLAIM_IDLE_MS) -> None:
        self.redis = client
        self._store = store
        self.claim_idle_ms = claim_idle_ms
        self._claimed_at = float("-inf")
        self._groups: set[tuple[str, str]] = set()
        self._publish = client.register_script(_PUBLISH)
        self._keep = client.register_script(_KEEP)

    async def _group(self, stream: str, group: str) -> None:
        if (stream, group) not in self._groups:
            with redis_errors():
                await _ensure_group(self.redis, stream, group)
            self._groups.add((stream, group))

    async def publish(self, trigger: Trigger) -> bool:
        """Enqueue a trigger; False when its dedup key was already seen (a channel retry)."""
        args = ["1" if trigger.dedup_key else "0", keys.DEDUP_TTL_SECONDS, keys.INBOX_MAXLEN, trigger.model_dump_json()]
        with redis_errors():
            fresh = await self._publish(keys=[keys.INBOX, keys.dedup(trigger.dedup_key)], args=args)
        if not fresh:
            log.info("duplicate trigger %s ignored", trigger.dedup_key)
        return bool(fresh)

    async def keep(self, consumer: str, entry_id: str) -> bool:
        """Tell other workers this consumer is still working on the entry; False if it was claimed away."""
        with redis_errors():
            return bool(await self._keep(keys=[keys.INBOX], args=[keys.WORKERS_GROUP, consumer, entry_id]))

    async def take(self, consumer: str, count: int = 10, block_ms: int = 1000) -> list[tuple[str, Trigger]]:
        """Triggers for this worker: entries abandoned by a crashed worker first, then new ones.

        `block_ms=0` returns at once (Redis itself would read BLOCK 0 as "wait forever").
        """
        await self._group(keys.INBOX, keys.WORKERS_GROUP)
        with redis_errors():
            entries = []
            # Abandoned work is looked for a few times per claim interval, not on every take.
            if time.monotonic() - self._claimed_at >= self.claim_idle_ms / 4000:
                self._claimed_at = time.monotonic()
                reply: Any = await self.redis.xautoclaim(
                    keys.INBOX, keys.WORKERS_GROUP, consumer, min_idle_time=self.claim_idle_ms, count=count
                )
                entries = [entry for entry in reply[1] if await self._deliverable(entry[0], entry[1])]
            if not entries:
                fresh: Any = await self.redis.xreadgroup(
                    keys.WORKERS_GROUP, consumer, {keys.INBOX: ">"}, count=count, block=block_ms or None
                )
                entries = [entry for _, stream_entries in fresh or [] for entry in stream_entries]
        return [parsed for parsed in [await self._parse(eid, fields) for eid, fields in entries] if parsed]

    async def _deliverable(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """A trigger taken over again and again kills its workers: park it instead of trying forever."""
        pending: Any = await self.redis.xpending_range(keys.INBOX, keys.WORKERS_GROUP, entry_id, entry_id, 1)
        deliveries = int(pending[0]["times_delivered"]) if pending else 0
        if deliveries <= keys.MAX_DELIVERIES:
            return True
        raw = fields.get(b"t", b"").decode(errors="replace")
        await self.dead_letter(
            entry_id.decode(), raw, f"delivered {deliveries} times without completing; workers crashed on it"
        )
        return False

    async def _parse(self, entry_id: bytes, fields: dict[bytes, bytes]) -> tuple[str, Trigger] | None:
        raw = fields.get(b"t", b"")
        try:
            return entry_id.decode(), TRIGGER_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            await self.dead_letter(entry_id.decode(), raw.decode(errors="replace"), f"malformed trigger: {exc}")
            return None

    async def ack(self, entry_id: str) -> None:
        with redis_errors():
            await self.redis.xack(keys.INBOX, keys.WORKERS_GROUP, entry_id)

    async def dead_letter(self, entry_id: str, raw: str, error: str) -> None:
        """Park a trigger that cannot be processed, with the reason, and acknowledge it."""
        log.error("trigger %s moved to %s: %s", entry_id, DEAD_LETTER, error)
        with redis_errors():
            await self.redis.xadd(DEAD_LETTER, {"entry": entry_id, "t": raw, "error": error[:2000]})
            await self.redis.xack(keys.INBOX, keys.WORKERS_GROUP, entry_id)

    async def send(self, outbound: Outbound) -> None:
        with redis_errors():
            await self.redis.xadd(
                keys.outbox(outbound.channel), {"o": outbound.model_dump_json()}, maxlen=keys.OUTBOX_MAXLEN
            )

    async def receive(
        self, channel: str, consumer: str, group: str = "renderers", block_ms: int = 1000
    ) -> list[tuple[str, Outbound]]:
        """Outbound messages for one channel, each delivered to one renderer of the group."""
        stream = keys.outbox(channel)
        await self._group(stream, group)
        with redis_errors():
            # A renderer that died mid-render left its messages pending: take them over first.
            claimed: Any = await self.redis.xautoclaim(
                stream, group, consumer, min_idle_time=self.claim_idle_ms, count=50
            )
            entries = list(claimed[1])
            if not entries:
                fresh: Any = await self.redis.xreadgroup(
                    group, consumer, {stream: ">"}, count=50, block=block_ms or None
                )
                entries = [entry for _, stream_entries in fresh or [] for entry in stream_entries]
        return [(entry_id.decode(), OUTBOUND_ADAPTER.validate_json(fields[b"o"])) for entry_id, fields in entries]

    async def done(self, channel: str, entry_id: str, group: str = "renderers") -> None:
        with redis_errors():
            await self.redis.xack(keys.outbox(channel), group, entry_id)

    async def position(self, channel: str) -> str:
        """The id of the channel's newest outbound message, to `follow` from."""
        with redis_errors():
            last: Any = await self.redis.xrevrange(keys.outbox(channel), count=1)
        return last[0][0].decode() if last else "0-0"

    async def follow(self, channel: str, after: str, block_ms: int = 1000) -> tuple[str, list[Outbound]]:
        """Every outbound message of a channel after `after` (a broadcast read, for terminals and tests)."""
        stream = keys.outbox(channel)
        with redis_errors():
            fresh: Any = await self.redis.xread({stream: after}, count=100, block=block_ms or None)
        out = []
        for _, entries in fresh or []:
            for entry_id, fields in entries:
                after = entry_id.decode()
                out.append(OUTBOUND_ADAPTER.validate_json(fields[b"o"]))
        return after, out

    async def deliver(
        self,
        channel: str,
        render: Callable[[Outbound], Awaitable[None]],
        stop: asyncio.Event,
        consumer: str,
        group: str = "renderers",
    ) -> None:
        """Render a channel's outbound messages until `stop`, each once across the group's processes.

        A message whose rendering keeps failing is parked on `outbox:<channel>:dead` with the
        error, so one bad message cannot block the channel.
        """
        while not stop.is_set():
            try:
                items = await self.receive(channel, consumer, group, block_ms=500)
            except Exception as exc:  # noqa: BLE001 - keep delivering once Redis is back
                log.warning("outbox %s: %s; retrying", channel, exc)
                await asyncio.sleep(1)
                continue
            for entry_id, outbound in items:
                await self._render_one(channel, entry_id, outbound, render)
                await self.done(channel, entry_id, group)

    async def _render_one(
        self, channel: str, entry_id: str, outbound: Outbound, render: Callable[[Outbound], Awaitable[None]]
    ) -> None:
        for attempt in range(1, RENDER_ATTEMPTS + 1):
            try:
                await render(outbound)
                return
            except Exception as exc:  # noqa: BLE001 - any channel failure is retried, then parked
                log.warning("outbox %s: rendering %s failed (%d of %d): %s", channel, entry_id, attempt,
                            RENDER_ATTEMPTS, exc)  # fmt: skip
                error = f"{type(exc).__name__}: {exc}"
                if attempt < RENDER_ATTEMPTS:
                    await asyncio.sleep(0.5 * attempt)
        with redis_errors():
            await self.redis.xadd(f"{keys.outbox(channel)}:dead", {"o": outbound.model_dump_json(), "error": error})
