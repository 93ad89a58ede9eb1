"""What mail looks like: an HTML part beside the text, the card as a table, choices numbered, people and
times readable (never a raw identity, a marker or an ISO timestamp), and help without the model."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from adapters.email.channel import body_of, check_settings
from adapters.email.readable import Readable
from config.channels import EmailSettings
from core import ConfigError, people
from core.domain import events as ev
from tests.conftest import ScriptedModel, call
from tests.email.conftest import BOT, SECRET, MailWorld
from tests.email.mails import DANA, SAM, new_mail, reply, text
from tests.email.test_email_flow import approvals, requested

AT = datetime(2026, 12, 2, 15, 49, 11, 189419, tzinfo=UTC)
BERLIN = Readable(ZoneInfo("Europe/Berlin"))
RAW = re.compile(r"<who:|<when:|email:\w|slack:T|\d{4}-\d\d-\d\dT\d\d|\.\d{6}")


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert isinstance(part, EmailMessage), "the mail has an HTML part"
    return str(part.get_content())


def outbound(kind: type[ev.OutboundT], **fields: object) -> ev.OutboundT:
    base = {"id": "o1", "channel": "email", "conversation": "c1", "thread_id": "t1"}
    return kind.model_validate(base | fields)


def test_core_refusals_name_people_by_address_and_times_in_the_zone() -> None:
    refusal = outbound(
        ev.Notice,
        text=f"{people.who('email:mallory@example.net')} may not decide approval a1: you are not one of its allowed "
        f"approvers; allowed approvers: the oncall group ({people.who('cli:operator')}, "
        f"{people.who('email:dana@example.com')}). Nothing changed.",
    )
    assert body_of(refusal).startswith("mallory@example.net may not decide approval a1")
    assert "the oncall group (operator, dana@example.com)" in body_of(refusal)
    already = outbound(
        ev.Notice,
        text=f"approval a1 was already approved by {people.who('slack:T0PEER001:U0ONCALL1')} at {people.when(AT)}",
    )
    assert body_of(already) == "approval a1 was already approved by U0ONCALL1 at 2026-12-02 15:49 UTC"
    assert body_of(already, BERLIN) == "approval a1 was already approved by U0ONCALL1 at 2026-12-02 16:49 CET"
    assert not RAW.search(body_of(refusal) + body_of(already))


def test_a_decision_reads_as_a_sentence_and_a_rejection_is_no_failure() -> None:
    base = {"approval_id": "a1", "by": "email:dana@example.com", "at": AT, "tool": "deploy"}
    approved = outbound(ev.DecisionReceipt, decision="approve", **base)
    rejected = outbound(ev.DecisionReceipt, decision="reject", comment="not during the freeze", **base)
    expired = outbound(ev.DecisionReceipt, decision="expire", **base)
    assert body_of(approved, BERLIN) == "dana@example.com approved deploy at 2026-12-02 16:49 CET."
    assert body_of(rejected) == "dana@example.com rejected deploy at 2026-12-02 15:49 UTC: not during the freeze"
    assert (
        body_of(expired)
        == "The approval for deploy expired at 2026-12-02 15:49 UTC without a decision; it did not run."
    )


def test_the_requesters_note_names_the_approvers_mail_reaches_and_counts_the_rest() -> None:
    request = outbound(
        ev.ApprovalRequest,
        approval_id="a1",
        tool="deploy",
        args={"service": "api"},
        reason="asked: deploy api",
        requester="email:sam@example.com",
        approvers=["cli:operator", "email:dana@example.com", "discord:111"],
        expires_at=AT,
    )
    note = body_of(request)
    assert "Waiting for: dana@example.com and 2 on other channels" in note
    assert "Expires: 2026-12-02 15:49 UTC" in note and not RAW.search(note)


def test_a_zone_that_does_not_exist_is_refused_with_the_fix() -> None:
    settings = EmailSettings.from_env(
        {"BOT_EMAIL_ADDRESS": BOT, "EMAIL_TOKEN_SECRET": SECRET, "EMAIL_TIMEZONE": "Mars/Olympus"}
    )
    assert isinstance(settings, EmailSettings)
    with pytest.raises(ConfigError, match="EMAIL_TIMEZONE='Mars/Olympus' is not a time zone"):
        check_settings(settings)


async def test_a_reply_has_a_text_and_an_escaped_html_part_with_nothing_remote(make_world) -> None:
    answer = 'api is <b>up</b> & "fine"\n\n```\n<img src="https://tracker.example/x.png">\n```\nsee `status`'
    model = ScriptedModel([call("reply", message=answer)])
    w: MailWorld = await make_world(model)
    await w.deliver(new_mail(SAM, "how is api?", subject="api"))
    mail = (await w.until(lambda: w.smtp.to(SAM)))[0]
    assert mail.get_content_type() == "multipart/alternative"
    assert text(mail).replace("\r\n", "\n").strip() == answer
    markup = html_of(mail)
    assert "api is &lt;b&gt;up&lt;/b&gt; &amp; &quot;fine&quot;" in markup
    assert "&lt;img src=&quot;https://tracker.example/x.png&quot;&gt;" in markup and "<pre" in markup
    assert "<code" in markup and ">status</code>" in markup
    assert not re.search(r"<(img|link|script|iframe)\b|<[^>]*\s(src|background)=|url\(", markup), (
        "nothing for a client to fetch"
    )


async def test_the_approval_mail_is_a_table_with_times_in_the_readers_zone(make_world) -> None:
    w: MailWorld = await make_world(email_env={"EMAIL_TIMEZONE": "Europe/Berlin"})
    _, approval = await requested(w)
    plain, markup = text(approval), html_of(approval)
    record = (await w.h.wiring.store.pending_approvals())[0]
    expires = record.expires_at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M %Z")
    assert re.search(rf"Expires:\s+{expires}\s", plain) and not RAW.search(plain)
    for label, value in [
        ("Tool", "deploy"),
        ("Requested by", SAM),
        ("Expires", expires),
        ("Approval id", record.approval_id),
    ]:
        assert re.search(rf"<th[^>]*>{label}</th><td[^>]*>(<p[^>]*>)?{re.escape(value)}", markup), label
    assert re.search(r"<th[^>]*>Arguments</th><td[^>]*><pre[^>]*>\{\r?\n  &quot;environment&quot;", markup)
    assert "APPROVE" in markup and "REJECT" in markup and not RAW.search(markup)


async def test_a_question_with_options_is_numbered_and_a_number_answers_it(make_world) -> None:
    model = ScriptedModel([call("ask_human", question="Which environment?", options=["staging", "production", "both"])])
    w: MailWorld = await make_world(model)
    await w.deliver(new_mail(SAM, "restart api", subject="restart"))
    question = (await w.until(lambda: w.smtp.to(SAM)))[0]
    lines = [line.strip() for line in text(question).splitlines() if line.strip()]
    assert lines == [
        "Which environment?",
        "1. staging",
        "2. production",
        "3. both",
        "Reply with 1, 2 or 3, or write your own answer.",
    ]
    assert "<ol" in html_of(question) and "<li" in html_of(question)
    model.script.append(call("reply", message="restarting in production"))
    await w.deliver(reply(question, SAM, "2"))
    await w.until(lambda: [m for m in w.smtp.to(SAM) if "restarting in production" in text(m)])
    [answer] = [e for e in model.requests[-1].history if isinstance(e, ev.HumanAnswer)]
    assert answer.choice == "production"


async def test_a_mail_saying_help_answers_the_command_list_without_the_model(make_world) -> None:
    model = ScriptedModel([])  # any model request would fail: the script is empty
    w: MailWorld = await make_world(model)
    await w.deliver(new_mail(SAM, "help", subject="what can you do?"))
    answer = (await w.until(lambda: w.smtp.to(SAM)))[0]
    assert "Commands you can use" in text(answer) and "/status <service> <environment>" in text(answer)
    assert "/status &lt;service&gt; &lt;environment&gt;" in html_of(answer)
    assert model.requests == []


async def test_the_approval_reply_to_the_requester_is_readable(make_world) -> None:
    w: MailWorld = await make_world()
    await requested(w)
    note = (await w.until(lambda: w.smtp.to(SAM)))[0]
    assert "deploy needs approval before it runs" in text(note) and not RAW.search(text(note))
    assert approvals(w, DANA) and re.search(
        rf"Waiting for: {DANA}, erin@example.com and 1 on another channel", text(note)
    )


async def test_the_approval_mail_shows_the_tools_preview(make_world) -> None:
    """The deploy tool's dry run, in both parts of the mail; in the HTML part keeping its lines."""
    w: MailWorld = await make_world()
    _, approval = await requested(w)
    assert re.search(r"Preview:\s+plan: deploy api 1.4.2 to production\s+version: 1.0.0 -> 1.4.2", text(approval))
    assert re.search(
        r"<th[^>]*>Preview</th><td[^>]*><pre[^>]*>plan: deploy api 1.4.2 to production\r?\n", html_of(approval)
    )
