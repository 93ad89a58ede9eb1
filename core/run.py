"""A worker's working copy of one thread while it handles one trigger.

`commit` is the only way events are written: it redacts secrets, folds the events onto the
state (the incremental reducer), and appends both in one sequence-checked round trip.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from core import events as ev
from core.ids import new_id
from core.llm import Usage
from core.metrics import Metrics
from core.ports import Clock, Publisher
from core.redact import Redactor
from core.reducer import ThreadState, replay
from core.store import Store

AGENT_ACTOR = "agent"
ERROR_LINE_CHARS = 500


class Meta(TypedDict):
    id: str
    at: datetime
    actor: str


@dataclass
class Run:
    state: ThreadState
    store: Store
    clock: Clock
    redactor: Redactor
    metrics: Metrics | None = None
    publisher: Publisher | None = None  # set: progress goes out while the run is still working
    history: list[ev.Event] | None = None  # loaded only for models that read the thread
    outbox: list[ev.Outbound] = field(default_factory=list)
    progressed: bool = False
    _sending: asyncio.Task[None] | None = None

    def meta(self, actor: str = AGENT_ACTOR) -> Meta:
        return {"id": new_id(), "at": self.clock.now(), "actor": actor}

    async def commit(self, *events: ev.Event) -> None:
        clean = [self.redactor.model(event) for event in events] if self.redactor else list(events)
        new_state = replay(clean, state=self.state)
        await self.store.append(self.state, clean, new_state)
        self.state = new_state
        if self.metrics is not None:
            self.metrics.observe(new_state.agent, clean)
        if self.history is not None:
            self.history.extend(clean)

    def error(self, call_id: str, tool: str, error: str, kind: ev.ToolErrorKind) -> ev.ToolErrorEvent:
        line = " ".join(error.split())[:ERROR_LINE_CHARS]
        return ev.ToolErrorEvent(**self.meta(), call_id=call_id, tool=tool, error=line, kind=kind)

    def usage(self, usage: Usage | None) -> list[ev.Event]:
        return [] if usage is None else [ev.ModelCall(**self.meta(), **asdict(usage))]

    def out(self, kind: type[ev.OutboundT], **fields: Any) -> ev.OutboundT:
        """An outbound message to the thread's own channel and conversation."""
        state = self.state
        return kind(
            id=new_id(),
            channel=state.channel,
            conversation=state.conversation,
            thread_id=state.thread_id,
            reply_to=state.reply_to,
            **fields,
        )

    def send(self, kind: type[ev.OutboundT], **fields: Any) -> None:
        self.outbox.append(self.out(kind, **fields))

    def say(self, text: str) -> None:
        self.send(ev.Notice, text=text)

    def progress(self, text: str) -> None:
        """Tell the channel what is running now, once per run (channels edit one status message).

        Sent concurrently with the tool, off the step's critical path; `flush` waits for it, so
        the order of what the channel sees is kept.
        """
        if self.publisher is None or self.progressed:
            return
        self.progressed = True
        self.send(ev.Reply, text=text, final=False)
        pending, self.outbox = self.outbox, []
        self._sending = asyncio.create_task(self._publish(self.publisher, pending))

    async def flush(self, publisher: Publisher) -> None:
        """Publish what the run produced, after its events are stored."""
        if self._sending is not None:
            sending, self._sending = self._sending, None
            await sending
        pending, self.outbox = self.outbox, []
        await self._publish(publisher, pending)

    async def _publish(self, publisher: Publisher, outbound: list[ev.Outbound]) -> None:
        for item in outbound:
            await publisher.send(self.redactor.model(item))


def notice_to(trigger: ev.Trigger, text: str, level: ev.NoticeLevel = "warning") -> ev.Notice:
    """A notice only the trigger's sender should see, in the channel it came from."""
    return ev.Notice(
        id=new_id(),
        channel=trigger.channel,
        conversation=trigger.conversation,
        thread_id=trigger.thread_id,
        reply_to=trigger.reply_to,
        to=trigger.sender,
        text=text,
        level=level,
    )
