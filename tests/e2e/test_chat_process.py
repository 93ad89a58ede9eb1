"""`bot chat` as a real process: approvals through the terminal, on the embedded Redis, across a crash.

cli:operator asks; APPROVER (`bot chat --user dana`, on call in every process: see `bot_env`) decides,
at a terminal of her own, because the shipped policies need an approver other than the requester.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import APPROVER
from tests.e2e.chat_driver import DEPLOY, DEPLOY_ARGS, DEPLOYED, BotProcesses, approve, on_call, request_deploy
from tests.fake_anthropic import FakeAnthropic, tool_use

# Every bot start imports the SDKs and joins or starts a redis-server: seconds, not milliseconds.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REASON = "not during the freeze"
NAME = APPROVER.partition(":")[2]  # how the terminal shows the approver: dana, not cli:dana


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    processes = BotProcesses(tmp_path / "data")
    try:
        yield processes
    finally:
        await processes.close()


async def pending_approvals(bots: BotProcesses) -> dict[str, str]:
    """`bot approvals` as approval id -> thread id."""
    out = await bots.run("approvals")
    if out.strip() == "no pending approvals":
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"^(\w+)  \w+ .*  thread (\w+)  ", line)
        assert match is not None, f"unexpected `bot approvals` line: {line!r}"
        found[match[1]] = match[2]
    return found


async def only_thread(bots: BotProcesses) -> str:
    lines = (await bots.run("thread", "list")).splitlines()
    assert len(lines) == 1, lines
    return lines[0].split()[0]


def deploy_summaries(deploys: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(d["service"], d["version"], d["environment"], d["by"]) for d in deploys]


def tool_started(events: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "tool_started" and e["tool"] == tool]


def count(lines: list[str], pattern: str) -> int:
    return sum(1 for line in lines if re.search(pattern, line))


async def test_approved_deploy_runs_once(bots: BotProcesses) -> None:
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    assert await bots.deploys() == []
    dana = await on_call(bots)
    await dana.expect(rf"^bot> pending approval: {approval_id}  deploy ")
    await approve(chat, approval_id, by=dana)

    thread_id = await only_thread(bots)
    events = await bots.thread_events(thread_id)
    transcript = await chat.quit()
    await dana.quit()

    # The deploy is the requester's; the decision is the approver's.
    assert deploy_summaries(await bots.deploys()) == [("api", "1.4.2", "production", "cli:operator")]
    assert len(tool_started(events, "deploy")) == 1
    decided = [e for e in events if e["type"] == "approval_decided"]
    assert [(e["approval_id"], e["decision"], e["actor"]) for e in decided] == [(approval_id, "approve", APPROVER)]
    assert count(transcript, DEPLOYED) == 1


async def test_the_requester_may_not_approve_their_own_deploy(bots: BotProcesses) -> None:
    """The shipped production policies separate duties: the card names only the others on call, and the
    requester's own `approve` is refused and changes nothing."""
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    await chat.say(f"approve {approval_id}")
    await chat.expect(
        rf"^bot> \[warning\] operator may not decide approval {approval_id}: you requested it, and this tool "
        r"needs an approver other than the requester; "
    )
    pending = await pending_approvals(bots)
    transcript = await chat.quit()

    assert list(pending) == [approval_id]
    assert count(transcript, rf"^bot>   who may approve: {NAME}$") == 1
    assert await bots.deploys() == []


async def test_rejected_deploy_does_not_run_and_says_why(bots: BotProcesses) -> None:
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    dana = await on_call(bots)
    await dana.say(f"reject {approval_id} {REASON}")
    await chat.expect(rf"^bot> approval {approval_id} rejected by {NAME} at .*: {REASON}$")
    await chat.expect(rf"^bot> rejected by {NAME}: {REASON}$")
    transcript = await chat.quit()
    await dana.quit()

    assert await bots.deploys() == []
    assert count(transcript, r"deployed api") == 0


async def test_rejection_reason_reaches_the_model(bots: BotProcesses) -> None:
    """The router hands the request to deploybot, whose deploy call is rejected; its next request carries
    the reason as an error tool_result."""
    script = [
        tool_use("hand_to_deploybot", {"note": "Deploy api 1.4.2 to production."}),
        tool_use("deploy", DEPLOY_ARGS),
        tool_use("reply", {"message": "Understood: api stays on 1.0.0."}),
    ]
    async with FakeAnthropic(script) as fake:
        model = {"ANTHROPIC_API_KEY": "test", "ANTHROPIC_BASE_URL": fake.base_url}
        chat = await bots.chat(env=model)
        approval_id = await request_deploy(chat, "ship api 1.4.2 to prod")
        dana = await on_call(bots, env=model)  # either process's worker may continue the thread
        await dana.say(f"reject {approval_id} {REASON}")
        await chat.expect(r"^bot> Understood: api stays on 1\.0\.0\.$")
        await chat.quit()
        await dana.quit()

    assert await bots.deploys() == []
    assert len(fake.requests) == 3
    assert "You are router" in fake.requests[0]["system"][0]["text"]
    assert "You are deploybot" in fake.requests[1]["system"][0]["text"]
    assert "ship api 1.4.2 to prod" in json.dumps(fake.requests[1]["messages"])
    deploy_call = script[1]["content"][-1]
    results = [
        block
        for msg in fake.requests[2]["messages"]
        if msg["role"] == "user" and isinstance(msg["content"], list)
        for block in msg["content"]
        if block["type"] == "tool_result" and block["tool_use_id"] == deploy_call["id"]
    ]
    assert len(results) == 1 and results[0].get("is_error") is True
    assert f"rejected by {NAME}: {REASON}" in str(results[0]["content"])


async def test_pending_approval_survives_killing_the_bot_and_redis(bots: BotProcesses) -> None:
    """SIGKILL both the bot and redis-server while an approval waits: the append-only file keeps it."""
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    pending = await pending_approvals(bots)
    assert list(pending) == [approval_id]
    thread_id = pending[approval_id]
    await chat.kill()
    await bots.kill_redis()

    chat = await bots.chat()
    dana = await on_call(bots)
    await dana.expect(rf"^bot> pending approval: {approval_id}  deploy .*  thread {thread_id}  ")
    await approve(chat, approval_id, by=dana)
    threads = (await bots.run("thread", "list")).splitlines()
    events = await bots.thread_events(thread_id)
    transcript = await chat.quit()
    await dana.quit()

    assert count(transcript, r"^bot> pending approval: ") == 0  # not offered to the requester, who may not decide it
    assert [line.split()[:2] for line in threads] == [[thread_id, "done"]]
    assert len(tool_started(events, "deploy")) == 1
    assert deploy_summaries(await bots.deploys()) == [("api", "1.4.2", "production", "cli:operator")]


async def test_second_approval_of_the_same_id_is_refused(bots: BotProcesses) -> None:
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    dana = await on_call(bots)
    await approve(chat, approval_id, by=dana)
    await dana.say(f"approve {approval_id}")
    await dana.expect(
        rf"^bot> \[warning\] approval {approval_id} was already approved by {NAME} at .*; nothing changed$"
    )
    await dana.quit()
    transcript = await chat.quit()

    assert count(transcript, DEPLOYED) == 1
    assert deploy_summaries(await bots.deploys()) == [("api", "1.4.2", "production", "cli:operator")]


async def test_approver_outside_the_group_is_refused(bots: BotProcesses) -> None:
    operator = await bots.chat()
    approval_id = await request_deploy(operator)
    mallory = await bots.chat("--user", "mallory")
    await mallory.say(f"approve {approval_id}")
    await mallory.expect(
        rf"^bot> \[warning\] mallory may not decide approval {approval_id}: you are not one of its allowed "
        r"approvers; "
        rf"allowed approvers: the oncall group \({NAME}, operator\)\. Nothing changed\.$"
    )
    pending = await pending_approvals(bots)
    assert await bots.deploys() == []
    mallory_saw = await mallory.quit()

    assert list(pending) == [approval_id]
    assert count(mallory_saw, r"pending approval|approval needed") == 0  # not offered to someone who may not decide
    dana = await on_call(bots)
    await approve(operator, approval_id, by=dana)
    await dana.quit()
    await operator.quit()
    assert deploy_summaries(await bots.deploys()) == [("api", "1.4.2", "production", "cli:operator")]


async def test_free_text_without_a_model_explains_how_to_enable_one(bots: BotProcesses) -> None:
    chat = await bots.chat()
    await chat.say("what is running in production?")
    await chat.expect(r"^bot> .*set ANTHROPIC_API_KEY")
    await chat.expect(r"^bot>   /deploy <service> <version> <environment> \[approval\]")
    await chat.quit()
    assert await bots.deploys() == []


async def test_a_terminal_that_died_before_printing_the_card_shows_it_on_restart(bots: BotProcesses) -> None:
    """`bot chat` stores the approval request with its step and dies at once (the `after-commit`
    failpoint): the card is never lost, and approving it works. The dead one's printer may win the
    race to the card by a few microseconds: then it printed it, and the next one prints it again
    only if the kill came between printing and remembering."""
    # The dead terminal's lease on the thread must lapse before the approval can run: make it short,
    # or the approval waits out the default 30 s and races the driver's deadline.
    takeover = {"BOT_LOCK_TTL_MS": "1500", "BOT_CLAIM_IDLE_MS": "1500"}
    chat = await bots.chat(env={"BOT_FAILPOINTS": "after-commit=kill", **takeover})
    await chat.say(DEPLOY)
    assert await chat.process.wait() == -9, chat.transcript()
    assert chat.process.stdout is not None
    dead = chat.lines + (await chat.process.stdout.read()).decode(errors="replace").splitlines()
    shown = [m[1] for line in dead if (m := re.search(r"^bot> approval needed \[(\w+)\]: deploy ", line))]

    chat = await bots.chat(env=takeover)
    approval_id = shown[0] if shown else (await chat.expect(r"^bot> approval needed \[(\w+)\]: deploy "))[1]
    dana = await on_call(bots, env=takeover)
    await approve(chat, approval_id, by=dana)
    await dana.quit()
    lines = await chat.quit()
    again = count(lines, r"^bot> approval needed ")
    # Never lost; printed once, except when the dead terminal printed it and died before remembering
    # so (print, then remember: at least once), then the next one prints it again.
    assert (len(shown), again) in ((0, 1), (1, 0), (1, 1))
    assert deploy_summaries(await bots.deploys()) == [("api", "1.4.2", "production", "cli:operator")]


async def test_the_approver_sees_the_receipt(bots: BotProcesses) -> None:
    """The approver's terminal prints the receipt of the decision she typed there, once."""
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    dana = await on_call(bots)
    await approve(chat, approval_id, by=dana)
    await chat.quit()
    dana_saw = await dana.quit()  # prints what is left in the outbox before it exits

    assert count(dana_saw, rf"^bot> approval {approval_id} approved by {NAME} at ") == 1
