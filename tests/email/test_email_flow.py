"""The email channel end to end: Dovecot in, the real worker in between, aiosmtpd out."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from adapters.email.security import Token, Tokens
from core.domain import events as ev
from core.domain.errors import ChannelError, DeliveryRefused
from core.redis.sweeper import Sweeper
from tests.conftest import ScriptedModel, call
from tests.email.conftest import BOT, SECRET, MailWorld
from tests.email.mails import DANA, ERIN, MALLORY, SAM, new_mail, own_id, reply, text, thread_ids

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"  # a readable time: minutes, the zone named, never ISO
TOKEN = re.compile(r"^bot\+appr-([0-9a-z]+)\.([0-9a-f]{20})@example\.com$")


def deploys(tmp_path: Path) -> list[tuple[str, str, str]]:
    path = tmp_path / "data" / "deployments.json"
    history = json.loads(path.read_text())["history"] if path.exists() else []
    return [(d["service"], d["version"], d["by"]) for d in history if d["action"] == "deploy"]


def approvals(w: MailWorld, address: str) -> list[EmailMessage]:
    return [m for m in w.smtp.to(address) if str(m["Subject"]).startswith("[Approval ")]


def others(w: MailWorld, address: str) -> list[EmailMessage]:
    return [m for m in w.smtp.to(address) if not str(m["Subject"]).startswith("[Approval ")]


async def requested(w: MailWorld, body: str = "/deploy api 1.4.2 production") -> tuple[EmailMessage, EmailMessage]:
    """Sam asks for a gated action; returns Sam's mail and Dana's approval mail."""
    request = new_mail(SAM, body, subject="ship it")
    await w.deliver(request)
    return request, (await w.until(lambda: approvals(w, DANA)))[0]


async def test_a_mail_gets_a_reply_in_the_same_thread(make_world) -> None:
    w = await make_world()
    first = new_mail(SAM, "/status api staging", subject="api in staging?")
    await w.deliver(first)
    answer = (await w.until(lambda: w.smtp.to(SAM)))[0]
    assert answer["From"] == BOT and answer["Subject"] == "Re: api in staging?"
    assert thread_ids(answer) == ([own_id(first)], [own_id(first)])
    assert "api" in text(answer) and "staging" in text(answer)

    follow_up = reply(answer, SAM, "/status api production")
    await w.deliver(follow_up)
    second = (await w.until(lambda: w.smtp.to(SAM)[1:]))[0]
    in_reply_to, references = thread_ids(second)
    assert in_reply_to == [own_id(follow_up)] and references[0] == own_id(first) and references[-1] == own_id(follow_up)
    threads = await w.h.wiring.store.list_threads()
    assert [(t.channel, t.conversation, t.requester) for t in threads] == [("email", own_id(first), f"email:{SAM}")]
    events = await w.h.wiring.store.load_events(threads[0].thread_id)
    assert [e.text for e in events if isinstance(e, ev.UserMessage)] == [
        "/status api staging",
        "/status api production",
    ]


async def test_a_gated_tool_mails_each_approver_a_signed_request(make_world) -> None:
    w = await make_world()
    request, _ = await requested(w)
    mails = {address: (await w.until(lambda a=address: approvals(w, a)))[0] for address in (DANA, ERIN)}
    record = (await w.h.wiring.store.pending_approvals())[0]
    tokens = Tokens(SECRET.encode(), BOT)
    for address, mail in mails.items():
        found = TOKEN.match(str(mail["Reply-To"]))
        assert found is not None and found.group(1) == record.approval_id
        token = Token(found.group(1), found.group(2))
        assert tokens.verify(token, f"email:{address}")  # signed for this approver, and only for them
        assert not tokens.verify(token, f"email:{ERIN if address == DANA else DANA}")
        assert mail["Subject"].startswith(f"[Approval {token}] deploy environment=production service=api")
        assert mail["To"] == address and mail["From"] == BOT and mail["Auto-Submitted"] == "auto-generated"
        assert await w.channel.state.approval_mail(record.approval_id, f"email:{address}") == own_id(mail)
        body = text(mail)
        for expected in (
            '"version": "1.4.2"',
            '"environment": "production"',
            f"{SAM} needs your approval to run deploy.",
            "UTC",
            "APPROVE",
            "REJECT",
        ):
            assert expected in body
        assert re.search(rf"Requested by:\s+{SAM}\s", body) and re.search(rf"Expires:\s+{WHEN}\s", body)
        assert "<who:" not in body and "email:" not in body
        html = mail.get_body(preferencelist=("html",))
        assert html is not None and "&quot;version&quot;: &quot;1.4.2&quot;" in html.get_content()
    note = (await w.until(lambda: w.smtp.to(SAM)))[0]
    assert "needs approval" in text(note) and thread_ids(note)[0] == [own_id(request)]
    # cli:operator, also on call, is not mailed; nobody else is; the secret never leaves.
    assert {r for sent in w.smtp.sent for r in sent.recipients} == {DANA, ERIN, SAM}
    assert not any(SECRET in str(sent.message) for sent in w.smtp.sent)


async def test_approve_runs_the_tool_once_and_the_requester_hears_in_their_thread(make_world, tmp_path) -> None:
    w = await make_world()
    request, approval = await requested(w)
    await w.deliver(reply(approval, DANA, "APPROVE"))
    outcome = await w.until(lambda: [m for m in w.smtp.to(SAM) if "deployed api 1.4.2" in text(m)])
    assert deploys(tmp_path) == [("api", "1.4.2", f"email:{SAM}")]
    assert thread_ids(outcome[0])[1][0] == own_id(request)
    assert any(re.match(rf"{DANA} approved deploy at {WHEN}\.", text(m)) for m in w.smtp.to(SAM))
    receipt = (await w.until(lambda: others(w, DANA)))[0]
    assert (
        re.match(rf"{DANA} approved deploy at {WHEN}\.", text(receipt)) and own_id(approval) in thread_ids(receipt)[1]
    )

    # A second APPROVE (another mail, from the other approver too) changes nothing.
    erin_approval = approvals(w, ERIN)[0]
    await w.deliver(reply(approval, DANA, "approve"))
    await w.deliver(reply(erin_approval, ERIN, "APPROVED"))
    await w.until(lambda: len(others(w, DANA)) == 2 and others(w, ERIN))
    for mail in (others(w, DANA)[1], others(w, ERIN)[0]):
        assert re.search(rf"already approved by {DANA} at {WHEN};", text(mail))
    await w.settle()
    assert deploys(tmp_path) == [("api", "1.4.2", f"email:{SAM}")]


async def test_snooze_by_reply_puts_the_request_off_and_the_requester_hears(make_world, tmp_path) -> None:
    w = await make_world()
    _, approval = await requested(w)
    await w.deliver(reply(approval, DANA, "SNOOZE 20m"))
    told = await w.until(lambda: [m for m in w.smtp.to(SAM) if "snoozed the approval for deploy" in text(m)])
    assert re.search(rf"{DANA} snoozed the approval for deploy until {WHEN}", text(told[0]))
    record = (await w.h.wiring.store.pending_approvals())[0]
    assert record.status == "pending" and record.snoozed_by == f"email:{DANA}" and deploys(tmp_path) == []
    await w.deliver(reply(approval, DANA, "snooze forever"))
    assert await w.until(lambda: [m for m in others(w, DANA) if "is not a duration" in text(m)])

    # When the snooze ends, each approver is mailed the request again (a new mail, the same token).
    w.h.clock.advance(20 * 60 + 1)
    await Sweeper(w.h.wiring.store, w.h.wiring.bus, w.h.wiring.tools, w.h.clock).sweep()
    again = await w.until(lambda: approvals(w, DANA)[1:], "the request mailed again to dana")
    assert again[0]["Message-ID"] != approval["Message-ID"] and again[0]["Reply-To"] == approval["Reply-To"]
    await w.deliver(reply(again[0], DANA, "APPROVE"))
    await w.until(lambda: deploys(tmp_path), "the deploy after approving the mail sent again")


async def test_reject_with_a_reason_reaches_the_agent(make_world, tmp_path) -> None:
    model = ScriptedModel([call("deploy", service="api", version="1.4.2", environment="production")])
    w = await make_world(model)
    _, approval = await requested(w, "please ship api 1.4.2 to production")
    model.script.append(call("reply", message="ok, not deploying"))
    await w.deliver(reply(approval, DANA, "REJECT not during the freeze\nwe ship on Monday"))
    await w.until(lambda: [m for m in w.smtp.to(SAM) if "ok, not deploying" in text(m)])
    errors = [e for e in model.requests[-1].history if isinstance(e, ev.ToolErrorEvent)]
    assert errors[-1].kind == "rejected" and "not during the freeze" in errors[-1].error
    assert deploys(tmp_path) == []


async def test_a_reply_from_someone_who_is_not_the_approver_is_refused(make_world, tmp_path) -> None:
    w = await make_world()
    _, approval = await requested(w)
    # Mallory got Dana's approval mail forwarded and answers it: Dana's token, Mallory's From.
    await w.deliver(reply(approval, MALLORY, "APPROVE"))
    refusal = (await w.until(lambda: w.smtp.to(MALLORY)))[0]
    assert "sent to another approver" in text(refusal) and "Nothing changed" in text(refusal)
    record = (await w.h.wiring.store.pending_approvals())[0]
    assert record.status == "pending" and deploys(tmp_path) == []


async def test_a_tampered_token_is_refused(make_world, tmp_path) -> None:
    w = await make_world()
    _, approval = await requested(w)
    token = TOKEN.match(str(approval["Reply-To"]))
    assert token is not None
    forged = f"{token.group(1)}.{'0' * 20}"
    await w.deliver(
        reply(approval, DANA, "APPROVE", to=f"bot+appr-{forged}@example.com", subject=f"Re: [Approval {forged}] deploy")
    )
    refusal = (await w.until(lambda: others(w, DANA)))[0]
    assert "token in this reply is not valid" in text(refusal)
    assert (await w.h.wiring.store.pending_approvals())[0].status == "pending" and deploys(tmp_path) == []


async def test_an_unclear_first_line_is_asked_again_never_guessed(make_world, tmp_path) -> None:
    w = await make_world()
    _, approval = await requested(w)
    unclear = reply(approval, DANA, "yes, but only after 5pm")
    await w.deliver(unclear)
    question = (await w.until(lambda: others(w, DANA)))[0]
    assert "could not read an answer" in text(question) and "APPROVE" in text(question)
    assert thread_ids(question)[0] == [own_id(unclear)] and deploys(tmp_path) == []
    await w.deliver(reply(approval, DANA, "Approve."))
    await w.until(lambda: deploys(tmp_path))


async def test_a_reply_to_an_approval_mail_without_its_token_is_refused(make_world, tmp_path) -> None:
    """Recognised by the stored Message-ID of the approval mail, but only the token may decide."""
    w = await make_world()
    _, approval = await requested(w)
    await w.deliver(reply(approval, DANA, "APPROVE", to=BOT, subject="sure"))
    refusal = (await w.until(lambda: others(w, DANA)))[0]
    assert "carries no approval token" in text(refusal) and deploys(tmp_path) == []


async def test_approve_in_a_new_mail_is_not_a_decision(make_world, tmp_path) -> None:
    """Text `approve <id>` works in chat; by mail only a signed reply counts, so a forged From cannot approve."""
    w = await make_world()
    await requested(w)
    record = (await w.h.wiring.store.pending_approvals())[0]
    await w.deliver(new_mail(DANA, f"approve {record.approval_id}"))
    refusal = (await w.until(lambda: others(w, DANA)))[0]
    assert "reply to the approval mail" in text(refusal)
    assert (await w.h.wiring.store.get_approval(record.approval_id)).status == "pending" and deploys(tmp_path) == []


async def test_the_same_mail_delivered_twice_is_handled_once(make_world) -> None:
    w = await make_world()
    mail = new_mail(SAM, "/status api staging")
    await w.deliver(mail)
    await w.deliver(mail)
    await w.until(lambda: w.smtp.to(SAM))
    await w.settle()
    assert len(w.smtp.to(SAM)) == 1


async def test_a_policy_can_send_a_chat_approval_by_email(make_world, tmp_path) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(
        "[groups]\noncall = ['cli:operator']\n"
        "[tools.wipe]\ndescription = 'Wipe a cache.'\nexecutor = {kind='command', argv=['echo', 'wiped']}\n"
        "approval = {required=true, approvers=['group:oncall'], notify=['email']}\n"
    )
    w = await make_world(BOT_TOOLS_FILE=str(tools))
    await w.h.say("/wipe")
    approval = (await w.until(lambda: approvals(w, DANA)))[0]
    assert w.smtp.to(SAM) == []  # no requester note: the thread is in the terminal
    await w.deliver(reply(approval, DANA, "APPROVE"))
    await w.until(lambda: wiped(w))
    receipt = (await w.until(lambda: others(w, DANA)))[0]
    assert re.match(rf"{DANA} approved wipe at {WHEN}\.", text(receipt))


async def wiped(w: MailWorld) -> bool:
    return any(isinstance(o, ev.Reply) and o.text == "wiped" for o in await w.h.outbox())


async def test_the_token_is_read_from_the_subject_or_the_delivered_to_address(make_world, tmp_path) -> None:
    w = await make_world()
    _, approval = await requested(w)
    # Dana's client replied to From and kept the subject: the subject's token counts.
    await w.deliver(reply(approval, DANA, "REJECT wrong version", to=BOT))
    await w.until(lambda: [m for m in w.smtp.to(SAM) if text(m).startswith(f"{DANA} rejected deploy at ")])
    await w.deliver(new_mail(SAM, "/deploy web 2.0.0 production"))
    second = (await w.until(lambda: approvals(w, DANA)[1:]))[0]
    # Subject rewritten, but the MTA recorded the plus address it delivered to.
    plus_address = str(second["Reply-To"])
    await w.deliver(reply(second, DANA, "APPROVE", subject="ok", Delivered_To=plus_address, to=BOT))
    await w.until(lambda: deploys(tmp_path))
    assert deploys(tmp_path) == [("web", "2.0.0", f"email:{SAM}")]


async def test_an_expired_approval_is_refused_by_mail(make_world, tmp_path) -> None:
    w = await make_world()
    _, approval = await requested(w)
    w.h.clock.advance(2 * 3600)
    await w.deliver(reply(approval, DANA, "APPROVE"))
    refusal = (await w.until(lambda: others(w, DANA)))[0]
    assert "expired" in text(refusal) and deploys(tmp_path) == []


async def test_a_question_is_answered_by_replying(make_world) -> None:
    model = ScriptedModel([call("ask_human", question="Which environment?")])
    w = await make_world(model)
    request = new_mail(SAM, "restart api", subject="restart")
    await w.deliver(request)
    question = (await w.until(lambda: w.smtp.to(SAM)))[0]
    assert text(question).startswith("Which environment?") and "replying" in text(question)
    model.script += [call("status", service="api", environment="staging"), call("reply", message="api is fine")]
    await w.deliver(reply(question, SAM, "staging"))
    answer = (await w.until(lambda: w.smtp.to(SAM)[1:]))[0]
    assert text(answer).strip() == "api is fine" and thread_ids(answer)[1][0] == own_id(request)
    history = model.requests[-1].history
    assert [e.text for e in history if isinstance(e, ev.HumanAnswer)] == ["staging"]


async def test_a_reply_sent_again_after_a_crash_has_the_same_message_id(make_world) -> None:
    """SMTP cannot take a mail back: a renderer that died after sending sends it again, recognisably the same."""
    w = await make_world()
    await w.deliver(new_mail(SAM, "/status api staging", subject="api in staging?"))
    first = (await w.until(lambda: w.smtp.to(SAM)))[0]
    _, outbound = await w.h.wiring.bus.follow("email", "0-0", block_ms=0)
    answer = next(o for o in outbound if isinstance(o, ev.Reply) and o.final)
    assert w.channel is not None
    await w.channel.render(answer)  # as the renderer that takes the entry over does
    again = w.smtp.to(SAM)[1]
    assert again["Message-ID"] == first["Message-ID"] == f"<{answer.id}@{first['Message-ID'].split('@')[1][:-1]}>"
    assert again["In-Reply-To"] == first["In-Reply-To"], "threaded the same way: clients collapse the two"


async def test_a_permanent_smtp_refusal_is_not_retried_and_a_temporary_one_is(make_world) -> None:
    w = await make_world()
    await w.deliver(new_mail(SAM, "/status api staging", subject="api in staging?"))
    await w.until(lambda: w.smtp.to(SAM))
    _, outbound = await w.h.wiring.bus.follow("email", "0-0", block_ms=0)
    answer = next(o for o in outbound if isinstance(o, ev.Reply) and o.final)
    assert w.channel is not None
    w.smtp.refusals += ["550 5.1.1 no such user", "451 4.3.0 try again later"]
    with pytest.raises(DeliveryRefused, match="refused the mail for good"):
        await w.channel.render(answer)
    with pytest.raises(ChannelError) as temporary:
        await w.channel.render(answer)
    assert not isinstance(temporary.value, DeliveryRefused)


async def test_approve_with_name_value_lines_runs_the_edited_call(make_world, tmp_path) -> None:
    """Edit before approve by mail: `APPROVE` then `name=value` lines; an edit the schema refuses is
    answered with the reason and changes nothing."""
    w = await make_world()
    _, approval = await requested(w)
    await w.deliver(reply(approval, DANA, "APPROVE\nversion=latest"))
    refused = await w.until(lambda: [m for m in others(w, DANA) if "does not fit deploy" in text(m)])
    assert "still waits" in text(refused[0]) and deploys(tmp_path) == []

    await w.deliver(reply(approval, DANA, "APPROVE\nversion=1.4.3\nchecked the changelog"))
    await w.until(lambda: deploys(tmp_path))
    assert deploys(tmp_path) == [("api", "1.4.3", f"email:{SAM}")]
    [state] = await w.h.wiring.store.list_threads()
    events = await w.h.wiring.store.load_events(state.thread_id)
    [edited] = [e for e in events if isinstance(e, ev.ArgumentsEdited)]
    assert (edited.before["version"], edited.after["version"], edited.by) == ("1.4.2", "1.4.3", f"email:{DANA}")
