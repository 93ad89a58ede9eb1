"""The inbox and outbox streams between channels and workers.

Adapters publish `Trigger`s to `inbox` (one consumer group of workers); workers publish
`Outbound`s to `outbox:<channel>`; each channel reads its own outbox with a consumer group,
so a message is rendered once even with several channel processes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import ValidationError

from core.domain.events import OUTBOUND_ADAPTER, TRIGGER_ADAPTER, Outbound, Trigger
from core.obs import tracing
from core.redis import keys, lua
from core.redis.store import Store, redis_errors
from core.tools.redact import Redactor

log = logging.getLogger(__name__)

DEAD_LETTER = "inbox:dead"


async def _ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _span_attributes(trigger: Trigger) -> dict[str, tracing.Attribute] | None:
    if not tracing.on():
        return None
    return {
        "messaging.system": "redis",
        "messaging.destination.name": keys.INBOX,
        "messaging.operation.type": "send",
        "bot.trigger_kind": trigger.kind,
        "bot.trigger_id": trigger.id,
        "bot.channel": trigger.channel,
    }


class Bus:
    def __init__(
        self,
        client: aioredis.Redis,
        store: Store,
        claim_idle_ms: int = keys.CLAIM_IDLE_MS,
        redactor: Redactor | None = None,
    ) -> None:
        self.redis = client
        self._store = store
        self.redactor = redactor or Redactor({})
        self.claim_idle_ms = claim_idle_ms
        self._claimed_at = float("-inf")
        self._groups: set[tuple[str, str]] = set()
        self._outbox_claimed: dict[str, float] = {}
        self.channels: set[str] = set()  # outboxes this process wrote to: the sweeper trims them
        self._publish = client.register_script(lua.PUBLISH)
        self._keep = client.register_script(lua.KEEP)
        self._trim = client.register_script(lua.TRIM)

    async def _group(self, stream: str, group: str) -> None:
        if (stream, group) not in self._groups:
            with redis_errors():
                await _ensure_group(self.redis, stream, group)
            self._groups.add((stream, group))

    def redact(self, text: str) -> str:
        """`text` with every known secret replaced: for what a channel echoes at once (acks), before any worker."""
        return self.redactor.text(text)

    async def publish(self, trigger: Trigger) -> bool:
        """Enqueue a trigger, secrets redacted; False when its dedup key was already seen (a channel retry).

        When tracing, the trigger carries this span's context: the worker's spans join the publisher's trace.
        """
        traced = tracing.on()
        with tracing.span(f"publish {keys.INBOX}", _span_attributes(trigger), kind="producer") as span:
            if traced:  # a span the sampler dropped is carried too: the worker then drops its own
                trigger = trigger.model_copy(update={"trace": tracing.inject()})
            trigger = self.redactor.model(trigger)
            # Not tracing, the field is left out (a re-published dead letter's old trace with it): a worker
            # that predates the field refuses unknown fields.
            raw = trigger.model_dump_json(exclude=None if traced else {"trace"})
            args = ["1" if trigger.dedup_key else "0", keys.DEDUP_TTL_SECONDS, raw]
            with redis_errors():
                fresh = await self._publish(keys=[keys.INBOX, keys.dedup(trigger.dedup_key)], args=args)
            if not fresh:
                span.set_attribute("bot.duplicate", True)
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
        error = self.redactor.text(error)
        log.error("trigger %s moved to %s: %s", entry_id, DEAD_LETTER, error)
        with redis_errors():
            # One transaction where the keys share a server; on a cluster the ack follows (a repeat is harmless).
            async with self.redis.pipeline(transaction=not self._store.cluster) as pipe:
                pipe.xadd(DEAD_LETTER, {"entry": entry_id, "t": self.redactor.text(raw), "error": error[:2000]})
                pipe.xack(keys.INBOX, keys.WORKERS_GROUP, entry_id)
                await pipe.execute()

    async def send(self, outbound: Outbound) -> None:
        """Publish one outbound message outside a thread's commit (refusals, reminders, progress notes)."""
        self.channels.add(outbound.channel)
        with redis_errors():
            await self.redis.xadd(keys.outbox(outbound.channel), {"o": self.redactor.model(outbound).model_dump_json()})

    async def receive(
        self, channel: str, consumer: str, group: str = "renderers", block_ms: int = 1000, count: int = 50
    ) -> list[tuple[str, Outbound]]:
        """Outbound messages for one channel, each delivered to one renderer of the group.

        Entries of a renderer that stopped renewing them (`keep`) for `claim_idle_ms` are taken over.
        """
        stream = keys.outbox(channel)
        await self._group(stream, group)
        with redis_errors():
            entries = []
            if time.monotonic() - self._outbox_claimed.get(channel, float("-inf")) >= self.claim_idle_ms / 4000:
                self._outbox_claimed[channel] = time.monotonic()
                claimed: Any = await self.redis.xautoclaim(
                    stream, group, consumer, min_idle_time=self.claim_idle_ms, count=count
                )
                entries = list(claimed[1])
            if not entries:
                fresh: Any = await self.redis.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=block_ms or None
                )
                entries = [entry for _, stream_entries in fresh or [] for entry in stream_entries]
        return [(entry_id.decode(), OUTBOUND_ADAPTER.validate_json(fields[b"o"])) for entry_id, fields in entries]

    async def keep_outbound(self, channel: str, consumer: str, entry_ids: list[str], group: str = "renderers") -> int:
        """Renew the lease on entries this renderer still holds (rendering, or waiting to retry)."""
        if not entry_ids:
            return 0
        with redis_errors():
            return int(await self._keep(keys=[keys.outbox(channel)], args=[group, consumer, *entry_ids]))

    async def rendered_ids(self, channel: str, outbound_ids: list[str]) -> set[str]:
        """Which of these outbound messages a renderer of `channel` has already shown."""
        if not outbound_ids:
            return set()
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for outbound_id in outbound_ids:
                    pipe.exists(keys.rendered(channel, outbound_id))
                found = await pipe.execute()
        return {oid for oid, hit in zip(outbound_ids, found, strict=True) if hit}

    async def done(self, channel: str, entry_id: str, group: str = "renderers", outbound_id: str = "") -> None:
        """Acknowledge an entry, remembering its outbound id as rendered (both or neither)."""
        with redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                if outbound_id:
                    pipe.set(keys.rendered(channel, outbound_id), 1, ex=keys.RENDERED_TTL_SECONDS)
                pipe.xack(keys.outbox(channel), group, entry_id)
                await pipe.execute()

    async def park(self, channel: str, entry_id: str, outbound: Outbound, error: str, group: str = "renderers") -> None:
        """Give up on an outbound message: keep it on `outbox:<channel>:dead` with the error, and acknowledge it."""
        log.error("outbox %s: gave up on %s %s: %s", channel, outbound.kind, outbound.id, error)
        with redis_errors():
            async with self.redis.pipeline(transaction=not self._store.cluster) as pipe:
                pipe.xadd(f"{keys.outbox(channel)}:dead", {"o": outbound.model_dump_json(), "error": error[:2000]})
                pipe.xack(keys.outbox(channel), group, entry_id)
                await pipe.execute()

    async def trim(self, stream: str) -> int:
        """Drop entries every consumer group has delivered and acknowledged; a stream read by position
        only (no group: terminals, the web console) keeps `FOLLOW_RETENTION_SECONDS`. Returns how many went.

        Logs a warning when a group's backlog passes `BACKLOG_WARNING`.
        """
        oldest = int((time.time() - keys.FOLLOW_RETENTION_SECONDS) * 1000)
        with redis_errors():
            removed, backlog = await self._trim(keys=[stream], args=[f"{oldest}-0", keys.BACKLOG_WARNING + 1])
        if int(backlog) > keys.BACKLOG_WARNING:
            log.warning("%s: %d entries not yet delivered; are its consumers running?", stream, int(backlog))
        return int(removed)

    async def backlog(self, stream: str) -> int:
        """Entries of `stream` some consumer group has not acknowledged (read or not); past
        `BACKLOG_WARNING` the count may stop there."""
        with redis_errors():
            _, waiting = await self._trim(keys=[stream], args=["count-only", keys.BACKLOG_WARNING + 1])
        return int(waiting)

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
