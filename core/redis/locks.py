"""Target locks: one gated call per target at a time, across threads and processes.

A lock is a lease (`SET ... PX`): the value names the thread and the call that hold it and since when,
the TTL covers the approval's deadline plus the tool's timeout, so a lock whose every holder died lapses
on its own. Each thread's targets are indexed beside them (`{locks}:thread:<id>`), so the thread releases
what it no longer needs in one script without knowing the targets' names. A thread taking a lock it
holds already takes it again (the same call renews it; a new call of the thread replaces the old one).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from core.redis import keys

# KEYS: the lock, the thread's index. ARGV: value, ttl ms, "<thread>\t", target, call id.
# Returns the other holder's value when another thread holds the lock (nothing changed), else nil.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[3]) ~= ARGV[3] then
  return current
end
if current and string.sub(current, 1, #ARGV[3] + #ARGV[5] + 1) == ARGV[3] .. ARGV[5] .. '\\t' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return false
"""

# KEYS: the thread's index. ARGV: "<thread>\t", the locks' key prefix, then the call ids to keep.
# Deletes each lock the thread holds for another call (one since taken by someone else is left alone).
_RELEASE = """
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local held = redis.call('HGETALL', KEYS[1])
local released = {}
for i = 1, #held, 2 do
  local target, call = held[i], held[i + 1]
  if not keep[call] then
    local key = ARGV[2] .. target
    local current = redis.call('GET', key)
    if current and string.sub(current, 1, #ARGV[1] + #call + 1) == ARGV[1] .. call .. '\\t' then
      redis.call('DEL', key)
    end
    redis.call('HDEL', KEYS[1], target)
    table.insert(released, target)
  end
end
return released
"""


@dataclass(frozen=True)
class Holder:
    """Who holds a target: the thread, its call of `tool`, since when."""

    thread_id: str
    call_id: str
    tool: str
    since: datetime

    def encode(self) -> str:
        return f"{self.thread_id}\t{self.call_id}\t{self.tool}\t{self.since.timestamp():.3f}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Holder:
        text = raw.decode() if isinstance(raw, bytes) else raw
        thread_id, call_id, tool, since = text.split("\t")
        return cls(thread_id, call_id, tool, datetime.fromtimestamp(float(since), UTC))


class Locks:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)

    async def take(self, target: str, holder: Holder, ttl_seconds: float) -> Holder | None:
        """Take (or renew) the lock on `target` for `holder`'s call; the other thread's holder when it is
        taken (then nothing changed), else None."""
        ttl_ms = max(1, round((ttl_seconds + keys.TARGET_LOCK_MARGIN_SECONDS) * 1000))
        args: list[str | int] = [holder.encode(), ttl_ms, f"{holder.thread_id}\t", target, holder.call_id]
        found = await self._take(keys=[keys.target_lock(target), keys.target_locks_held(holder.thread_id)], args=args)
        return None if found is None else Holder.decode(found)

    async def release(self, thread_id: str, keep: Collection[str] = ()) -> list[str]:
        """Release every lock `thread_id` holds for a call not in `keep`; returns those targets."""
        args = [f"{thread_id}\t", keys.TARGET_LOCK_PREFIX, *keep]
        released = await self._release(keys=[keys.target_locks_held(thread_id)], args=args)
        return [target.decode() if isinstance(target, bytes) else target for target in released]

    async def holder(self, target: str) -> Holder | None:
        raw = await self.redis.get(keys.target_lock(target))
        return None if raw is None else Holder.decode(raw)

    async def held(self, thread_id: str) -> dict[str, str]:
        """Target -> call id: the locks `thread_id` holds (as its index says)."""
        raw: dict[bytes, bytes] = await self.redis.hgetall(keys.target_locks_held(thread_id))  # type: ignore[assignment]
        return {target.decode(): call.decode() for target, call in raw.items()}
