"""The web channel (`web`): the console's chat page in a browser.

- Inbound: a message or a button click becomes a `MessageTrigger` / `DecisionTrigger` with
  `channel="web"`, `sender` the identity of the console's bearer token, and the conversation
  `<identity>/<browser conversation id>`, so one person's conversations are theirs alone.
- Outbound: the browser follows `outbox:web` over Server-Sent Events (`bot/http/live.py`), or
  long-polls `updates` (`Bus.follow`); both are broadcast reads, so any number of server processes
  can answer, and both show only that conversation's messages meant for that person. The browser
  renders them (`bot/console/console.js`). A question's options are buttons whose click comes back
  as a message with `answers` set to the question's call id.
- Routes and authentication live in `bot/http/console.py`; this module knows no HTTP.
"""

from __future__ import annotations

import asyncio
import re

from core import Bus, DecisionTrigger, MessageTrigger, Outbound, new_id, thread_id_for

CHANNEL = "web"
CONVERSATION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
POSITION = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
POLL_SLICE_MS = 500


class WebChannel:
    """Satisfies `core.ChannelAdapter`; the browser pulls, so `run` only waits for `stop`."""

    name = CHANNEL

    def __init__(self, bus: Bus, *, poll_slice_ms: int = POLL_SLICE_MS) -> None:
        self.bus = bus
        self.poll_slice_ms = poll_slice_ms

    @staticmethod
    def conversation_key(identity: str, conversation: str) -> str:
        return f"{identity}/{conversation}"

    def message(self, identity: str, conversation: str, text: str, answers: str = "") -> MessageTrigger:
        """What the person typed, or (`answers`: the question's call id) the option they clicked."""
        key = self.conversation_key(identity, conversation)
        return MessageTrigger(
            id=new_id(),
            channel=CHANNEL,
            conversation=key,
            sender=identity,
            text=text,
            answers=answers,
            thread_id=thread_id_for(CHANNEL, key),
        )

    def decision(
        self, identity: str, conversation: str, approval_id: str, approve: bool, comment: str
    ) -> DecisionTrigger:
        return DecisionTrigger(
            id=new_id(),
            channel=CHANNEL,
            conversation=self.conversation_key(identity, conversation),
            sender=identity,
            approval_id=approval_id,
            decision="approve" if approve else "reject",
            comment=comment,
        )

    @staticmethod
    def visible(identity: str, key: str, outbound: Outbound) -> bool:
        """This conversation's messages; a refusal (`to` set) only for the person it is meant for."""
        return outbound.conversation == key and outbound.to in ("", identity)

    async def position(self) -> str:
        """Where a new page starts reading: after everything already in the outbox."""
        return await self.bus.position(CHANNEL)

    async def updates(
        self, identity: str, conversation: str, after: str, wait_seconds: float, stop: asyncio.Event
    ) -> tuple[str, list[Outbound]]:
        """Messages for this person's conversation after `after`; waits up to `wait_seconds` for the first.

        Reads in short slices so a stopping server (`stop`) or a closed page releases the request soon.
        """
        key = self.conversation_key(identity, conversation)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            remaining_ms = int((deadline - loop.time()) * 1000)
            block_ms = max(1, min(self.poll_slice_ms, remaining_ms)) if remaining_ms > 0 and not stop.is_set() else 0
            after, items = await self.bus.follow(CHANNEL, after, block_ms=block_ms)
            mine = [outbound for outbound in items if self.visible(identity, key, outbound)]
            if mine or block_ms == 0:
                return after, mine

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
