"""A worker's working copy of one thread while it handles one trigger.

`commit` is the only way events are written: it redacts secrets, folds the events onto the
state (the incremental reducer), and appends both, with every outbound message the run has
queued since the last commit (`send`), in one sequence-checked script: the transactional
outbox. What the thread records and what the human is shown are stored together or not at
all, so a worker that dies after a commit leaves nothing unpublished. Progress notes are the
one exception: best effort, published while the tool runs (a lost one is replaced by the answer).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from core.domain import events as ev
from core.domain.backoff import Backoff
from core.domain.errors import StoreUnavailable
from core.domain.ids import new_id
from core.domain.ports import Clock, Publisher
from core.domain.reducer import ThreadState, replay
from core.obs.metrics import Metrics
from core.redis.audit import AuditLog, CommitAudit
from core.redis.store import DecisionWrite, Store
from core.tools.redact import Redactor

log = logging.getLogger(__name__)

AGENT_ACTOR = "agent"
ERROR_LINE_CHARS = 500
DURABLE_COMMIT_SECONDS = 600.0  # how long a finished tool's result is retried through a Redis outage


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
    audit: CommitAudit = field(init=False)
    # What the thread held when this run took it, and the calls that took target locks since (`core.runtime.holds`).
    began: ThreadState = field(init=False)
    locked: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.audit = CommitAudit(AuditLog(self.store), self.state)
        self.began = self.state

    def meta(self, actor: str = AGENT_ACTOR) -> Meta:
        return {"id": new_id(), "at": self.clock.now(), "actor": actor}

    async def commit(self, *events: ev.Event, decision: DecisionWrite | None = None) -> None:
        """Store `events` with the outbound messages queued so far, in one script; `decision` too, if given."""
        await self._progress_sent()  # a progress note goes out before what follows it
        encoded = [self.redactor.encode(event) for event in events]
        clean = [event for event, _ in encoded]
        outbound = [self.redactor.encode(item) for item in self.outbox]
        new_state = replay(clean, state=self.state)
        async with self.audit.commit(self.state, new_state, clean):  # approval facts reach the audit trail
            await self.store.append(
                self.state,
                clean,
                new_state,
                [item for item, _ in outbound],
                decision,
                encoded=[raw for _, raw in encoded],
                encoded_outbound=[raw for _, raw in outbound],
            )
        self.outbox = []
        self.state = new_state
        if self.metrics is not None:
            self.metrics.observe(new_state.agent, clean)
        if self.history is not None:
            self.history.extend(clean)

    async def commit_durably(self, *events: ev.Event) -> None:
        """Commit what only this worker knows (a finished tool's result) through a Redis outage.

        Retried with backoff under the lease (renewal rides out the outage too); the sequence check
        still refuses it if another worker took the thread over meanwhile.
        """
        loop = asyncio.get_running_loop()
        deadline, pauses = loop.time() + DURABLE_COMMIT_SECONDS, Backoff(first=0.2, cap=5.0)
        while True:
            try:
                return await self.commit(*events)
            except StoreUnavailable as exc:
                if loop.time() >= deadline:
                    raise
                pause = pauses.next()
                log.warning(
                    "thread %s: cannot store a finished result (%s); retrying in %.1fs",
                    self.state.thread_id,
                    exc,
                    pause,
                )
                await asyncio.sleep(pause)

    def error(self, call_id: str, tool: str, error: str, kind: ev.ToolErrorKind) -> ev.ToolErrorEvent:
        line = " ".join(error.split())[:ERROR_LINE_CHARS]
        return ev.ToolErrorEvent(**self.meta(), call_id=call_id, tool=tool, error=line, kind=kind)

    def usage(self, usage: ev.Usage | None) -> list[ev.Event]:
        return [] if usage is None else [ev.ModelCall(**self.meta(), **usage.model_dump())]

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
        """Queue an outbound message; it is stored with the next commit (or `finish`)."""
        self.outbox.append(self.out(kind, **fields))

    def say(self, text: str) -> None:
        self.send(ev.Notice, text=text)

    def progress(self, text: str) -> None:
        """Tell the channel what is running now, once per run (channels edit one status message).

        Best effort, sent concurrently with the tool, off the step's critical path; the next commit
        waits for it, so the order of what the channel sees is kept.
        """
        if self.publisher is None or self.progressed:
            return
        self.progressed = True
        note = self.redactor.model(self.out(ev.Reply, text=text, final=False))
        self._sending = asyncio.create_task(self.publisher.send(note))

    async def finish(self) -> None:
        """Store what was queued after the last commit (notices), in one outbound-only commit."""
        if self.outbox:
            assert self.state.seq > 0, "outbound-only commits are for threads that exist"
            await self.commit()
        await self._progress_sent()

    async def _progress_sent(self) -> None:
        if self._sending is None:
            return
        sending, self._sending = self._sending, None
        try:
            await sending
        except StoreUnavailable as exc:  # best effort: the answer that follows replaces it
            log.warning("thread %s: progress note not sent: %s", self.state.thread_id, exc)


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
