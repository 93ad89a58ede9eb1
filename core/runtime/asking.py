"""An MCP server's question during a running tool's call, asked in the thread and answered from any channel.

The worker that runs the tool asks (`ThreadAsker.ask`): it records `server_asked` with the question as an
outbound message in the thread's own channel (the durable outbox: nothing is lost if the channel is
down), then waits for the answer in Redis (`core.redis.asking`) without giving up the thread's lease,
and records `server_answered` before the call goes on.

The answer comes as an ordinary message or a button's click, through whichever worker takes it. That
worker cannot take the lease (the asking worker holds it for the whole call), so `ServerQuestions.take`
looks first, before the lease: a message from the person asked, or a click on the question's button,
answers it; a reply that does not fit the form is sent back saying what to fix, and the question stays
open. A question nobody answers within the server's `ask_timeout` is cancelled and the call fails saying
so. A worker that dies while asking leaves the tool interrupted, as any tool (`Loop._recover_interrupted`).

While a call waits, its worker takes further triggers in a second lane (`Worker.meanwhile`): a process with
one worker must still read the answer, which may be the inbox's next trigger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable

from core.domain import events as ev
from core.domain import people
from core.domain.errors import StoreUnavailable
from core.domain.ids import new_id
from core.domain.ports import Publisher
from core.redis.asking import Asked, Askings
from core.runtime.run import Run, notice_to
from core.tools.mcp import forms

log = logging.getLogger(__name__)


Meanwhile = Callable[[], contextlib.AbstractAsyncContextManager[None]]


class ThreadAsker:
    """Asks the thread's person the questions of one running call (`core.tools.mcp.forms.Asker`)."""

    def __init__(self, questions: ServerQuestions, run: Run, call_id: str) -> None:
        self.askings = questions.askings
        self.questions = questions
        self.run = run
        self.call_id = call_id

    async def ask(self, ask: forms.Ask, seconds: float) -> forms.Answer:
        run, thread_id = self.run, self.run.state.thread_id
        if why := forms.refusal(ask):
            run.say(
                f"MCP server {ask.server} asked something for {ask.tool} that I will not ask you: {why}. I declined it"
            )
            await run.commit()
            return forms.Answer("decline")
        asks = run.state.last_actor or run.state.requester
        ask_id = new_id()
        answerers = list(dict.fromkeys([asks, run.state.requester]))  # the person asked first: refusals name them
        await self.askings.open(thread_id, Asked(ask_id, answerers, dataclasses.asdict(ask)), seconds)
        run.send(
            ev.Question,
            question=forms.question(ask),
            options=forms.options(ask),
            asks=asks,
            call_id=ask_id,
            form=dict(ask.schema) if ask.mode == "form" else {},
            link=ask.url,
        )
        asked = ev.ServerAsked(
            **run.meta(f"mcp:{ask.server}"),
            call_id=self.call_id,
            ask_id=ask_id,
            server=ask.server,
            message=ask.message,
            fields=ask.fields,
            url=ask.url,
            asks=asks,
        )
        meanwhile = self.questions.meanwhile() if self.questions.meanwhile else contextlib.nullcontext()
        try:
            await run.commit(asked)
            async with meanwhile:
                got = await self.askings.wait(thread_id, ask_id, seconds)
        finally:
            with contextlib.suppress(StoreUnavailable):
                await self.askings.forget(thread_id, ask_id)
        if got is None:
            run.say(f"nobody answered MCP server {ask.server}'s question within {seconds:g}s, so I cancelled it")
            await run.commit(self._answered("system", ask_id, "cancel"))
            return forms.Answer("cancel", timed_out=True)
        answer = forms.Answer(got["action"], dict(got.get("content") or {}))
        await run.commit(self._answered(got["by"], ask_id, answer.action, answer.content, got.get("trigger", "")))
        return answer

    def _answered(
        self, by: str, ask_id: str, action: forms.Action, content: dict[str, object] | None = None, trigger: str = ""
    ) -> ev.ServerAnswered:
        return ev.ServerAnswered(
            **self.run.meta(by),
            call_id=self.call_id,
            ask_id=ask_id,
            action=action,
            content=content or {},
            trigger_id=trigger,
        )


class ServerQuestions:
    """The questions MCP servers ask in threads: an asker for each running call, and the answers' intake."""

    def __init__(self, askings: Askings, publisher: Publisher) -> None:
        self.askings = askings
        self.publisher = publisher
        # Set by this process's worker: while a call waits for a person, the worker keeps taking triggers.
        self.meanwhile: Meanwhile | None = None

    def asker(self, run: Run, call_id: str) -> ThreadAsker:
        return ThreadAsker(self, run, call_id)

    async def take(self, thread_id: str, trigger: ev.MessageTrigger) -> bool:
        """Answer the thread's open question with `trigger`, if it is an answer; True when it was taken
        (answered, or refused with a notice), False when the thread should have it as usual."""
        asked = await self.askings.pending(thread_id)
        if asked is None or (trigger.answers and trigger.answers != asked.ask_id):
            return False
        if trigger.sender not in asked.answerers:
            if not trigger.answers:
                return False  # someone else's remark: the thread records it after the call
            who = people.who(asked.answerers[0]) if asked.answerers else "the requester"
            return await self._tell(trigger, f"this question is for {who} to answer; nothing changed")
        ask = forms.Ask(**asked.question)
        try:
            answer = forms.answer_to(ask, trigger.text)
        except forms.FormError as exc:
            return await self._tell(
                trigger,
                f"that answer does not fit MCP server {ask.server}'s form: {exc}. Nothing was sent; answer again",
            )
        handed = {"action": answer.action, "content": answer.content, "by": trigger.sender, "trigger": trigger.id}
        if not await self.askings.answer(thread_id, asked.ask_id, handed):
            return await self._tell(trigger, "that question was already answered or has timed out; nothing changed")
        log.info("thread %s: %s answered question %s (%s)", thread_id, trigger.sender, asked.ask_id, answer.action)
        return True

    async def _tell(self, trigger: ev.MessageTrigger, text: str) -> bool:
        await self.publisher.send(notice_to(trigger, text))
        return True
