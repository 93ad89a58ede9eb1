"""The questions MCP servers ask while their tool runs, in Redis: asked by the worker that runs the tool,
answered through whichever worker takes the person's reply.

The worker running the tool holds the thread's lease for the whole call, so an answer cannot wait for
the lease: `core.runtime.asking` takes it before the lease (`pending` reads the question and whether a
worker still holds the thread, one round trip in the thread's slot), `answer` hands it over once, and
the asking worker pops it from a list (`wait`). A worker that dies while asking stops renewing the lease:
then the question is not answerable any more, and the thread's interrupted-tool rule takes over.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core.domain.backoff import Backoff
from core.domain.errors import StoreUnavailable
from core.redis import keys, lua
from core.redis.store import redis_errors

log = logging.getLogger(__name__)
WAIT_CHUNK_SECONDS = 5.0  # one blocking pop at most this long: shorter than any socket timeout we set


@dataclass(frozen=True)
class Asked:
    """A question being asked now: its id, who may answer, and the question as posted (for reading answers)."""

    ask_id: str
    answerers: list[str]
    question: dict[str, Any]  # core.tools.mcp.forms.Ask's fields


class Askings:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._answer = client.register_script(lua.ANSWER)
        self._forget = client.register_script(lua.FORGET_ASK)

    async def open(self, thread_id: str, asked: Asked, ttl: float) -> None:
        key = keys.thread_asking(thread_id)
        fields: dict[Any, Any] = {
            "ask_id": asked.ask_id,
            "answerers": json.dumps(asked.answerers),
            "question": json.dumps(asked.question),
        }
        with redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, int(ttl) + keys.ASK_LINGER_SECONDS)
                await pipe.execute()

    async def pending(self, thread_id: str) -> Asked | None:
        """The question asked in the thread now, if a worker still holds the thread to take its answer."""
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(keys.thread_asking(thread_id))
                pipe.exists(keys.thread_lock(thread_id))
                raw, held = await pipe.execute()
        if not raw or not held:
            return None
        fields = {_s(key): _s(value) for key, value in raw.items()}
        return Asked(
            fields["ask_id"], json.loads(fields.get("answerers") or "[]"), json.loads(fields.get("question") or "{}")
        )

    async def answer(self, thread_id: str, ask_id: str, answer: dict[str, Any]) -> bool:
        """Hand the answer to the asking worker; False when that question is not asked (any more)."""
        argv: list[str | int] = [ask_id, json.dumps(answer), keys.ASK_LINGER_SECONDS]
        with redis_errors():
            done = await self._answer(
                keys=[keys.thread_asking(thread_id), keys.thread_answer(thread_id, ask_id)], args=argv
            )
        return bool(int(done))

    async def wait(self, thread_id: str, ask_id: str, seconds: float) -> dict[str, Any] | None:
        """The answer, or None after `seconds`; rides out Redis blips while there is time left."""
        loop = asyncio.get_running_loop()
        deadline, pauses = loop.time() + seconds, Backoff(first=0.2, cap=2.0)
        key = keys.thread_answer(thread_id, ask_id)
        while (left := deadline - loop.time()) > 0:
            try:
                with redis_errors():
                    popped = await self.redis.blpop([key], timeout=max(0.1, min(left, WAIT_CHUNK_SECONDS)))
            except StoreUnavailable as exc:
                log.warning("thread %s: waiting for the answer to %s: %s; retrying", thread_id, ask_id, exc)
                await asyncio.sleep(min(pauses.next(), max(0.0, deadline - loop.time())))
                continue
            if popped is not None:
                return dict(json.loads(_s(popped[1])))
        return None

    async def forget(self, thread_id: str, ask_id: str) -> None:
        with redis_errors():
            await self._forget(
                keys=[keys.thread_asking(thread_id), keys.thread_answer(thread_id, ask_id)], args=[ask_id]
            )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
