"""Questions with choices: the model's `ask_human` may offer options; an answer by button, number or
text resumes the thread as a structured answer, and only the requester (or whom it names) answers."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from adapters.terminal import render
from core import MessageTrigger, new_id
from core.domain import events as ev
from core.domain.ids import thread_id_for
from core.model.llm import Choice, ModelRequest
from core.runtime.threads import chosen_option
from tests.conftest import Harness, ScriptedModel, call

OPTIONS = ["restart api", "roll back api", "leave it"]


def asking_model() -> ScriptedModel:
    """Asks once with options, then replies with what the answer's tool result said."""

    def choose(request: ModelRequest) -> Choice:
        if request.state.steps == 0:
            return call("ask_human", question="api is failing its health check. What should I do?", options=OPTIONS)
        return call("reply", message=f"done: {request.state.last_user_text}")

    return ScriptedModel(choose)


async def question_of(h: Harness) -> ev.Question:
    return next(o for o in await h.outbox() if isinstance(o, ev.Question))


async def answers(h: Harness) -> list[ev.HumanAnswer]:
    return [e for e in await h.wiring.store.load_events(thread_of(h)) if isinstance(e, ev.HumanAnswer)]


def thread_of(h: Harness) -> str:
    return thread_id_for("cli", h.conversation)


def click(h: Harness, question: ev.Question, option: str, sender: str | None = None) -> MessageTrigger:
    return MessageTrigger(
        id=new_id(),
        channel="cli",
        conversation=h.conversation,
        sender=sender or h.user,
        text=option,
        answers=question.call_id,
    )


def test_an_answer_picks_an_option_by_number_or_text() -> None:
    options = tuple(OPTIONS)
    assert chosen_option(options, "2") == "roll back api"
    assert chosen_option(options, " Leave it. ") == "leave it"
    assert chosen_option(options, "4") == "" and chosen_option(options, "restart web") == ""
    assert chosen_option((), "1") == ""


async def test_options_reach_the_channel_and_a_number_answers_with_the_option(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    h = make_harness(fake_redis, asking_model())
    await h.say("api looks broken")

    question = await question_of(h)
    assert question.options == OPTIONS and question.call_id
    shown = render(question)
    assert "bot>   2. roll back api" in shown and "number from 1 to 3" in shown

    await h.say("2")
    [answer] = await answers(h)
    assert (answer.text, answer.choice) == ("2", "roll back api")
    replies = [o.text for o in await h.outbox() if isinstance(o, ev.Reply)]
    assert replies == ["done: 2"]


async def test_a_click_answers_once_and_a_stale_click_is_refused(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    h = make_harness(fake_redis, asking_model())
    await h.say("api looks broken")
    question = await question_of(h)

    await h.wiring.bus.publish(click(h, question, "restart api"))
    await h.drain()
    await h.wiring.bus.publish(click(h, question, "leave it"))  # the same card, clicked again later
    await h.drain()

    [answer] = await answers(h)
    assert answer.choice == "restart api"
    refusals = [o for o in await h.outbox() if isinstance(o, ev.Notice) and o.to == h.user]
    assert refusals and "already answered" in refusals[-1].text


async def test_only_the_requester_answers_the_models_question(
    fake_redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    h = make_harness(fake_redis, asking_model())
    await h.say("api looks broken")
    question = await question_of(h)

    await h.wiring.bus.publish(click(h, question, "leave it", sender="cli:mallory"))
    await h.drain()
    await h.say("just restart everything", sender="cli:mallory")  # typed: a remark, not the answer

    assert await answers(h) == []
    state = await h.wiring.store.load_state(thread_of(h))
    assert state.status == "awaiting_human" and state.question_call == question.call_id
    [refusal] = [o for o in await h.outbox() if isinstance(o, ev.Notice) and o.to == "cli:mallory"]
    assert "this question is for <who:cli:operator> to answer" in refusal.text
    events = await h.wiring.store.load_events(thread_of(h))
    assert any(isinstance(e, ev.UserMessage) and e.actor == "cli:mallory" for e in events), "kept for the model"

    await h.say("restart api")
    [answer] = await answers(h)
    assert (answer.actor, answer.choice) == ("cli:operator", "restart api")
