"""A `request_approval` through `/mcp` mailed as a signed approval request (aiosmtpd out) and rejected by the
approver's reply (real Dovecot in), the waiting MCP caller getting the rejection, its reason and who decided."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.email.channel import EmailChannel
from adapters.email.imap import ImapClient
from adapters.email.security import Token, Tokens
from core.domain.ids import new_id
from tests.conftest import Harness
from tests.email.conftest import BOT, FAST, SECRET, email_settings
from tests.email.mails import DANA, own_id, reply, text
from tests.email.servers import Dovecot, SmtpSink
from tests.eventually import eventually
from tests.mcp.server_fixtures import CI, http_session, running_bot, tools_file
from tests.mcp.test_server_http import structured

TOKEN = re.compile(r"^bot\+appr-([0-9a-z]+)\.([0-9a-f]{20})@example\.com$")
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
DEPLOY = {"service": "api", "version": "1.4.3", "environment": "production"}


class MailedBot:
    """A core whose MCP requests live on `channel`, the email channel running beside it, a mail client."""

    def __init__(self, harness: Harness, channel: EmailChannel, smtp: SmtpSink) -> None:
        self.harness, self.channel, self.smtp = harness, channel, smtp
        self.imap: ImapClient | None = None
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(channel.run(self.stop))

    async def deliver(self, msg: EmailMessage) -> None:
        """Put a mail in the bot's mailbox with IMAP APPEND, as delivery would."""
        settings = self.channel.settings
        if self.imap is None:
            self.imap = await ImapClient.connect(settings, 5)
        await self.imap.append(bytes(msg), settings.imap_mailbox, None, None)

    def approvals(self, address: str) -> list[EmailMessage]:
        return [m for m in self.smtp.to(address) if str(m["Subject"]).startswith("[Approval ")]

    def others(self, address: str) -> list[EmailMessage]:
        return [m for m in self.smtp.to(address) if not str(m["Subject"]).startswith("[Approval ")]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)  # surfaces a crash of the channel
        if self.imap is not None:
            await self.imap.close()


@pytest.fixture(params=["web", "email"], ids=["web-thread-notified-by-email", "email-thread"])
async def mailed(
    request: pytest.FixtureRequest,
    dovecot: Dovecot,
    smtp: SmtpSink,
    embedded_redis: str,
    make_harness: Any,
    tmp_path: Path,
) -> AsyncIterator[MailedBot]:
    """`[mcp_server].channel` is the web console with `notify = ["email"]`, or email itself."""
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    channel = request.param
    notify = '["email"]' if channel == "web" else "[]"
    tools = tools_file(tmp_path, channel=channel, notify=notify)
    harness: Harness = make_harness(
        client, BOT_TOOLS_FILE=str(tools), BOT_GROUP_ONCALL=f"email:{DANA}"
    )  # on call by email, beside the file's web:alice and cli:dana
    settings = email_settings(dovecot, smtp, f"bot-{new_id()[-8:]}")
    wiring = harness.wiring
    bot = MailedBot(
        harness, EmailChannel(settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, timing=FAST), smtp
    )
    try:
        yield bot
    finally:
        await bot.close()
        await client.aclose()


async def test_a_reply_rejecting_the_approval_mail_answers_the_mcp_caller(mailed: MailedBot) -> None:
    async with running_bot(mailed.harness, wait_seconds=60) as bot, http_session(bot.url, CI) as session:
        call = asyncio.create_task(
            session.call_tool(
                "request_approval", {"action": "deploy", "arguments": DEPLOY, "reason": "the 1.4.3 release"}
            )
        )
        mail = (await eventually(lambda: mailed.approvals(DANA), "the approval mail to dana"))[0]
        record = await bot.pending("deploy")
        found = TOKEN.match(str(mail["Reply-To"]))
        assert found is not None and found.group(1) == record.approval_id
        assert Tokens(SECRET.encode(), BOT).verify(Token(found.group(1), found.group(2)), f"email:{DANA}")
        assert str(mail["Subject"]).startswith(f"[Approval {found.group(1)}.{found.group(2)}] mcp:deploy ")
        assert mail["To"] == DANA and mail["From"] == BOT
        body = text(mail)
        assert re.search(r"Why:\s+the 1\.4\.3 release\s", body) and re.search(r"Requested by:\s+ci-bot\s", body)
        assert '"version": "1.4.3"' in body and "REJECT" in body and "<who:" not in body
        assert not call.done()  # the caller waits for the decision

        await mailed.deliver(reply(mail, DANA, "REJECT not during the freeze\nwe ship on Monday"))
        decision = structured(await call)

    assert decision["status"] == "rejected" and decision["reason"] == "not during the freeze"
    assert decision["decided_by"] == f"email:{DANA}" and decision["approval_id"] == record.approval_id
    assert "Do not run it" in decision["message"]
    stored = await mailed.harness.wiring.store.get_approval(record.approval_id)
    assert stored is not None and (stored.status, stored.decided_by) == ("rejected", f"email:{DANA}")

    state = await mailed.harness.wiring.store.load_state(decision["handle"])
    assert state.status == "done"  # the request's thread ended with its reply

    receipt = (await eventually(lambda: mailed.others(DANA), "the receipt to dana, in the approval's thread"))[0]
    assert re.match(rf"{DANA} rejected mcp:deploy at {WHEN}: not during the freeze$", text(receipt).strip())
    assert f"<{own_id(mail)}>" in str(receipt["References"])
    # Only the email approver is mailed: web:alice and cli:dana see the card elsewhere; the caller is not a mailbox.
    assert {r for sent in mailed.smtp.sent for r in sent.recipients} == {DANA}
