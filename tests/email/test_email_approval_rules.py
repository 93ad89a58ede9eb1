"""The approval rules as the email channel carries them (issue 16), driven from outside: requests and
replies go into a real Dovecot mailbox, answers come out through aiosmtpd, and the assertions are on
the mails people read and on the thread's events.

The rules themselves are tested on the terminal's channel (tests/test_quorum.py and its neighbours);
here the question is whether a reply by mail reaches each rule, and each answer reaches the right person.
By mail an answer is the first line of a reply to a signed approval mail (`adapters/email/parse.py`),
so anything more (edits, `grant 4h`, a reason) goes on the lines after it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from adapters.email.security import Tokens
from bot.grants import run_grants
from core.domain import events as ev
from core.redis import keys
from core.redis.audit import AuditLog
from tests.email.conftest import BOT, SECRET, MailWorld
from tests.email.mails import DANA, ERIN, SAM, new_mail, reply, text

FAY = "fay@example.com"  # on call, and the only lead: the freeze override's group
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"

# Sam asks for everything and is on call himself, so `allow_self = false` is what keeps him from counting.
TOOLS = """
[groups]
oncall = ['email:sam@example.com', 'email:dana@example.com', 'email:erin@example.com', 'email:fay@example.com']
leads = ['email:fay@example.com']

[tools.failover]
description = 'Fail over the database; two people other than the requester must agree.'
executor = {kind='command', argv=['echo', 'failed over']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, approvals=2, expires_in=3600}

[tools.release]
description = 'Release a version; two approvals, which go stale after 15 minutes.'
executor = {kind='command', argv=['echo', 'released', '{version}']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, approvals=2, valid_for='15m', expires_in=3600}
parameters = {type='object', required=['version'], properties.version={type='string'}}

[tools.drain]
description = 'Drain a node; approvals open five minutes after the request.'
executor = {kind='command', argv=['echo', 'drained']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, wait='5m', expires_in=3600}

[tools.deploy]
description = 'Deploy a version of a service; one deploy per service at a time.'
executor = {kind='command', argv=['echo', 'deployed', '{service}', '{version}']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, expires_in=3600, lock='{service}', grants={max_for='8h', vary=['version']}}
[tools.deploy.parameters]
type = 'object'
required = ['service', 'version']
properties.service = {type='string'}
properties.version = {type='string'}

[tools.hotfix]
description = 'Ship a hotfix, even in a freeze, with a lead overriding it.'
executor = {kind='command', argv=['echo', 'hotfixed', '{service}']}
approval = {required=true, approvers=['group:oncall'], allow_self=false, freeze='override', freeze_override=['group:leads']}
parameters = {type='object', required=['service'], properties.service={type='string'}}
"""
# The harness's clock starts on Monday 23 November 2026 at 14:00 UTC, inside this freeze.
BLACK_FRIDAY = """
[freezes.black_friday]
start = 2026-11-20T00:00:00
end = 2026-11-30T09:00:00
timezone = "UTC"
reason = "peak trading"
"""


async def _world(make_world, tmp_path: Path, calendar: str = "") -> MailWorld:
    (tmp_path / "tools.toml").write_text(TOOLS)
    env = {"BOT_TOOLS_FILE": str(tmp_path / "tools.toml")}
    if calendar:
        (tmp_path / "calendar.toml").write_text(calendar)
        env["BOT_CALENDAR_FILE"] = str(tmp_path / "calendar.toml")
    return await make_world(**env)


def _is_approval_mail(msg: EmailMessage) -> bool:
    # strip(): Python's folding can put a subject such as "[Approval …] deploy service=api version=1.0"
    # on a continuation line of its own, and the sink reads it back with the fold's leading space.
    return str(msg["Subject"]).strip().startswith("[Approval ")


def approvals(w: MailWorld, address: str) -> list[EmailMessage]:
    return [m for m in w.smtp.to(address) if _is_approval_mail(m)]


def others(w: MailWorld, address: str) -> list[EmailMessage]:
    return [m for m in w.smtp.to(address) if not _is_approval_mail(m)]


def saying(w: MailWorld, address: str, words: str) -> list[EmailMessage]:
    """The mails to `address`, approval mails aside, whose text has `words`."""
    return [m for m in others(w, address) if words in text(m)]


async def _ask(w: MailWorld, body: str, subject: str = "please") -> EmailMessage:
    """Sam asks in a new mail (so a new thread); returns Dana's approval mail for it."""
    before = len(approvals(w, DANA))
    await w.deliver(new_mail(SAM, body, subject=subject))
    return (await w.until(lambda: approvals(w, DANA)[before:], f"dana's approval mail for {body!r}"))[0]


def grant_id(msg: EmailMessage) -> str:
    found = re.search(r"a standing grant \((g[0-9a-z]+)\)", text(msg))
    assert found is not None, text(msg)
    return found.group(1)


async def _outputs(w: MailWorld) -> list[str]:
    found = []
    for state in await w.h.wiring.store.list_threads():
        events = await w.h.wiring.store.load_events(state.thread_id)
        found += [str(e.output).strip() for e in events if isinstance(e, ev.ToolResult)]
    return found


async def test_two_of_three_with_the_requester_excluded_and_a_third_approver_late(make_world, tmp_path) -> None:
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/failover")
    erin = (await w.until(lambda: approvals(w, ERIN)))[0]
    fay = (await w.until(lambda: approvals(w, FAY)))[0]
    assert re.search(r"Approvals:\s+0 of 2", text(dana))
    assert approvals(w, SAM) == [], "the requester is not asked"
    [record] = await w.h.wiring.store.pending_approvals()

    # Sam answers with a token signed for him (as if he had been mailed one): he still may not decide.
    tokens = Tokens(SECRET.encode(), BOT)
    await w.deliver(
        reply(dana, SAM, "APPROVE", to=tokens.reply_address(tokens.sign(record.approval_id, f"email:{SAM}")))
    )
    [refusal] = await w.until(lambda: saying(w, SAM, "may not decide"))
    assert text(refusal).startswith(f"{SAM} may not decide approval {record.approval_id} (failover);")
    assert "Nothing changed." in text(refusal)

    await w.deliver(reply(dana, DANA, "APPROVE"))
    [counted] = await w.until(lambda: saying(w, DANA, "your approval counts"))
    assert text(counted).strip() == f"your approval counts: 1 of 2 approvals for failover ({DANA}); waiting for 1 more"
    await w.until(lambda: saying(w, SAM, "failover has 1 of the 2 approvals it needs"), "the requester hears")
    assert await _outputs(w) == [], "one approval is not enough"

    await w.deliver(reply(erin, ERIN, "APPROVE"))
    await w.until(lambda: saying(w, SAM, "failed over"))
    assert re.match(rf"{ERIN} approved failover at {WHEN}\.", text(saying(w, ERIN, "approved failover")[0]))

    await w.deliver(reply(fay, FAY, "APPROVE"))
    [late] = await w.until(lambda: others(w, FAY))
    assert re.match(
        rf"Approval {record.approval_id} \(failover\) was already approved by {ERIN} at {WHEN}; nothing changed\.",
        text(late),
    )
    await w.settle()
    assert await _outputs(w) == ["failed over"], "run once, and not again for the late approval"
    [state] = await w.h.wiring.store.list_threads()
    events = await w.h.wiring.store.load_events(state.thread_id)
    [decided] = [e for e in events if isinstance(e, ev.ApprovalDecided)]
    assert decided.approved_by == [f"email:{DANA}", f"email:{ERIN}"] and decided.channel == "email"


async def test_a_reply_to_the_request_an_edit_replaced_is_refused(make_world, tmp_path) -> None:
    """Dana edits the version while approving; Erin then answers the mail for the old version."""
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/release 1.0")
    [erin_old] = await w.until(lambda: approvals(w, ERIN))
    [old] = await w.h.wiring.store.pending_approvals()
    await w.deliver(reply(dana, DANA, "APPROVE\nversion=1.1"))
    [erin_new] = await w.until(lambda: approvals(w, ERIN)[1:], "erin mailed the edited request")
    assert '"version": "1.1"' in text(erin_new) and erin_new["Reply-To"] != erin_old["Reply-To"]
    [new] = await w.h.wiring.store.pending_approvals()
    assert new.edited_from == old.approval_id and [v.by for v in new.votes] == [f"email:{DANA}"]

    await w.deliver(reply(erin_old, ERIN, "APPROVE"))
    [refusal] = await w.until(lambda: others(w, ERIN))
    assert f"Approval {old.approval_id} (release) was already edited by {DANA}" in text(refusal)
    assert "nothing changed" in text(refusal)
    await w.settle()
    assert await _outputs(w) == []

    await w.deliver(reply(erin_new, ERIN, "APPROVE"))
    await w.until(lambda: saying(w, SAM, "released 1.1"))
    await w.settle()
    assert await _outputs(w) == ["released 1.1"]


@pytest.mark.xfail(
    strict=True,
    reason="issue 16: by mail the old request's refusal says 'was already edited by …' (adapters/email/inbound.py "
    "`_checked` refuses any non-pending record before the core), not the core's 'was replaced when … edited its "
    "arguments; answer the new request' that the terminal and the API give",
)
async def test_a_reply_to_the_request_an_edit_replaced_says_it_was_replaced(make_world, tmp_path) -> None:
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/release 1.0")
    [erin_old] = await w.until(lambda: approvals(w, ERIN))
    await w.deliver(reply(dana, DANA, "APPROVE\nversion=1.1"))
    await w.until(lambda: approvals(w, ERIN)[1:], "erin mailed the edited request")
    await w.deliver(reply(erin_old, ERIN, "APPROVE"))
    [refusal] = await w.until(lambda: others(w, ERIN))
    assert "was replaced" in text(refusal) and "new request" in text(refusal)


async def test_an_approval_before_the_wait_is_refused_saying_when_it_opens(make_world, tmp_path) -> None:
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/drain")
    [record] = await w.h.wiring.store.pending_approvals()
    await w.deliver(reply(dana, DANA, "APPROVE"))
    [early] = await w.until(lambda: saying(w, DANA, "can be given from"))
    assert text(early).strip() == (
        f"approval {record.approval_id} can be given from 2026-11-23 14:05 UTC (its policy waits 5m after the "
        "request); a rejection is possible now. Nothing changed."
    )
    assert (await w.h.wiring.store.get_approval(record.approval_id)).status == "pending"

    w.h.clock.advance(5 * 60)
    await w.deliver(reply(dana, DANA, "APPROVE"))
    await w.until(lambda: saying(w, SAM, "drained"))
    assert await _outputs(w) == ["drained"]


async def test_an_approval_older_than_valid_for_no_longer_counts(make_world, tmp_path) -> None:
    """Dana's approval is 16 minutes old when Erin's arrives: only Erin's counts, and Dana approves again."""
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/release 2.0")
    [erin] = await w.until(lambda: approvals(w, ERIN))
    await w.deliver(reply(dana, DANA, "APPROVE"))
    await w.until(lambda: saying(w, DANA, "your approval counts: 1 of 2"))
    w.h.clock.advance(16 * 60)

    await w.deliver(reply(erin, ERIN, "APPROVE"))
    [counted] = await w.until(lambda: saying(w, ERIN, "your approval counts"))
    assert text(counted).strip() == f"your approval counts: 1 of 2 approvals for release ({ERIN}); waiting for 1 more"
    assert await _outputs(w) == []

    await w.deliver(reply(dana, DANA, "APPROVE"))
    await w.until(lambda: saying(w, SAM, "released 2.0"))
    assert await _outputs(w) == ["released 2.0"]


async def test_a_freeze_refuses_a_gated_call_and_an_override_needs_a_lead(make_world, tmp_path) -> None:
    w = await _world(make_world, tmp_path, BLACK_FRIDAY)
    await w.deliver(new_mail(SAM, "/deploy api 1.0", subject="ship it"))
    [refusal] = await w.until(lambda: saying(w, SAM, "change freeze"))
    assert text(refusal).startswith("deploy is held by the change freeze black_friday (peak trading) until ")
    assert "Nothing ran and no approval was asked" in text(refusal)
    assert approvals(w, DANA) == [] and await w.h.wiring.store.pending_approvals() == []

    dana = await _ask(w, "/hotfix payments")
    [erin] = await w.until(lambda: approvals(w, ERIN))
    [fay] = await w.until(lambda: approvals(w, FAY))
    assert "needs your approval to run hotfix" in text(dana)
    await w.deliver(reply(dana, DANA, "APPROVE"))
    [counted] = await w.until(lambda: saying(w, DANA, "your approval counts"))
    assert "1 of 2 approvals for hotfix" in text(counted)
    assert "still needs an approver from the freeze override (the leads group" in text(counted)
    await w.deliver(reply(erin, ERIN, "APPROVE"))
    [nothing] = await w.until(lambda: others(w, ERIN))
    assert f"{ERIN} fills no group still open" in text(nothing)
    assert await _outputs(w) == []

    await w.deliver(reply(fay, FAY, "APPROVE"))
    await w.until(lambda: saying(w, SAM, "hotfixed payments"))
    assert await _outputs(w) == ["hotfixed payments"]


async def test_a_target_lock_held_by_one_thread_refuses_another_and_names_the_holder(make_world, tmp_path) -> None:
    w = await _world(make_world, tmp_path)
    await _ask(w, "/deploy api 1.0", subject="first")
    [holder] = await w.h.wiring.store.list_threads()
    await w.deliver(new_mail(SAM, "/deploy api 1.1", subject="second"))
    [refusal] = await w.until(lambda: saying(w, SAM, "is locked"))
    assert text(refusal).startswith(f"deploy on api is locked: thread {holder.thread_id} ")
    assert re.search(rf"holds it since {WHEN} for its deploy call", text(refusal))
    assert "Nothing ran and no approval was asked" in text(refusal)
    assert str(refusal["Subject"]) == "Re: second", "told in the thread that asked"
    assert len(await w.h.wiring.store.pending_approvals()) == 1 and len(approvals(w, DANA)) == 1


async def test_a_standing_grant_given_by_mail_used_and_then_revoked(make_world, tmp_path) -> None:
    """`grant 4h` goes on the line after APPROVE; on the first line it is not an answer, and is asked again.
    Mail has no command to revoke a grant: the operator's `bot grants revoke` does it."""
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/deploy api 1.0")
    await w.deliver(reply(dana, DANA, "APPROVE grant 4h"))
    [unclear] = await w.until(lambda: saying(w, DANA, "could not read an answer"))
    assert "'APPROVE grant 4h'" in text(unclear) and "still pending; nothing changed" in text(unclear)

    await w.deliver(reply(dana, DANA, "APPROVE\ngrant 4h"))
    await w.until(lambda: saying(w, SAM, "deployed api 1.0"))
    [given] = await w.until(lambda: saying(w, SAM, "a standing grant"))
    assert text(given).startswith(
        f"{DANA} gave {SAM} a standing grant ({grant_id(given)}) for deploy service=api version=* until "
    )
    [grant] = await w.h.wiring.grants.listed()
    assert (grant.requester, grant.granted_by) == (f"email:{SAM}", f"email:{DANA}")
    assert grant.expires_at == w.h.clock.now() + timedelta(hours=4) and grant.grant_id == grant_id(given)

    await w.deliver(new_mail(SAM, "/deploy api 1.1", subject="again"))
    await w.until(lambda: saying(w, SAM, "deployed api 1.1"))
    assert len(approvals(w, DANA)) == 1, "no approval mail for a call the grant covers"

    assert await run_grants(w.h.wiring, "revoke", grant.grant_id, identity=f"email:{DANA}") == 0
    await _ask(w, "/deploy api 1.2", subject="once more")
    assert len(approvals(w, DANA)) == 2, "revoked: the next call asks again"
    await w.settle()
    assert "deployed api 1.2" not in await _outputs(w)


async def _alter(client: aioredis.Redis, position: int, **change: object) -> None:
    """Rewrite the audit stream with record `position` altered (a stream entry cannot be edited in place)."""
    entries = await client.xrange(keys.AUDIT_LOG)
    await client.delete(keys.AUDIT_LOG)
    for index, (_, fields) in enumerate(entries, start=1):
        record = json.loads(fields[b"r"])
        await client.xadd(keys.AUDIT_LOG, {"r": json.dumps(record | change if index == position else record)})


async def test_a_decision_by_mail_is_audited_and_a_record_altered_in_redis_fails_verify(
    make_world, redis, tmp_path
) -> None:
    w = await _world(make_world, tmp_path)
    dana = await _ask(w, "/drain")
    w.h.clock.advance(5 * 60)
    await w.deliver(reply(dana, DANA, "APPROVE"))
    await w.until(lambda: saying(w, SAM, "drained"))
    [state] = await w.h.wiring.store.list_threads()
    audit = AuditLog(w.h.wiring.store)
    records = await audit.thread_records(state.thread_id)
    assert [(r.fact, r.who, r.channel) for r in records] == [
        ("requested", f"email:{SAM}", "email"),
        ("approved", f"email:{DANA}", "email"),
        ("started", f"email:{DANA}", "email"),
        ("result", "tool:drain", "email"),
    ]
    assert (await audit.verify()).intact

    await _alter(redis, 2, who="email:mallory@example.net")
    fault = (await audit.verify()).fault
    assert fault is not None and (fault.n, fault.problem) == (2, "changed")
