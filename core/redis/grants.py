"""Standing grants in Redis (`core.domain.grants`): stored, found for a call in one round trip, revoked.

- Each grant is a hash (`{grants}:grant:<id>`, its JSON in `data`), kept until its expiry plus a week so
  `bot grants` still shows an expired or revoked one by id.
- The live grants of one tool and requester sit in one more hash (`{grants}:for:<tool>:<requester>`), so
  the check a gated call makes before asking for approval is one HGETALL. Revoking removes the grant
  from it in the same script that marks it revoked; an expired one stays until the hash's TTL (the
  latest expiry) and is skipped by `Grant.live`.
- Listings read `{grants}:all` (id -> expiry), trimmed of what expired past the retention.
"""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

from core.domain.grants import Grant
from core.redis import keys

# KEYS: the grant, the tool and requester's index, the listing. ARGV: id, JSON, expiry (epoch s), the grant's
# TTL (s), the index's TTL (s).
_SAVE = """
redis.call('HSET', KEYS[1], 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""

# KEYS: the grant, its index. ARGV: id, the revoked JSON, who revokes. Returns 1 when revoked, 0 when it was
# revoked already (by someone else a moment ago), -1 when it is gone.
_REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'revoked_by') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'revoked_by', ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class StoredGrants:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._save = client.register_script(_SAVE)
        self._revoke = client.register_script(_REVOKE)

    async def save(self, grant: Grant, now: datetime) -> None:
        left = max(1, int((grant.expires_at - now).total_seconds()) + 1)
        args: list[str | int | float] = [
            grant.grant_id,
            grant.model_dump_json(),
            grant.expires_at.timestamp(),
            left + keys.GRANT_RETENTION_SECONDS,
            left,
        ]
        index = keys.grants_for(grant.tool, grant.requester)
        await self._save(keys=[keys.grant(grant.grant_id), index, keys.GRANT_INDEX], args=args)

    async def for_call(self, tool: str, requester: str) -> list[Grant]:
        """The grants stored for `tool` and `requester` that were not revoked (expired ones too): one round trip."""
        raw: dict[bytes, bytes] = await self.redis.hgetall(keys.grants_for(tool, requester))  # type: ignore[assignment]
        return [Grant.model_validate_json(data) for data in raw.values()]

    async def get(self, grant_id: str) -> Grant | None:
        raw = await self.redis.hget(keys.grant(grant_id), "data")
        return None if raw is None else Grant.model_validate_json(raw)

    async def listed(self, now: datetime) -> list[Grant]:
        """Every grant still kept (live, expired or revoked within the retention), the soonest to expire first."""
        await self.redis.zremrangebyscore(keys.GRANT_INDEX, "-inf", now.timestamp() - keys.GRANT_RETENTION_SECONDS)
        found_ids: list[bytes] = await self.redis.zrange(keys.GRANT_INDEX, 0, -1)  # type: ignore[assignment]
        ids = [_text(grant_id) for grant_id in found_ids]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for grant_id in ids:
                pipe.hget(keys.grant(grant_id), "data")
            found = await pipe.execute()
        return [Grant.model_validate_json(data) for data in found if data is not None]

    async def revoke(self, grant: Grant, by: str, now: datetime) -> Grant | None:
        """Mark `grant` revoked by `by`; the revoked grant, or None when it was revoked (or dropped) meanwhile."""
        revoked = grant.model_copy(update={"revoked_by": by, "revoked_at": now})
        index = keys.grants_for(grant.tool, grant.requester)
        args = [grant.grant_id, revoked.model_dump_json(), by]
        done = await self._revoke(keys=[keys.grant(grant.grant_id), index], args=args)
        return revoked if done == 1 else None
