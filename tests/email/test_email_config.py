"""Configuration the channel refuses, SMTP security, sender verification and mail-loop safety."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from adapters.email.channel import check_settings
from adapters.email.compose import SmtpMailer, Thread, text_mail
from config.channels import EmailSettings
from core import ChannelError, ConfigError, DeliveryRefused
from tests.email.conftest import BOT, SECRET, MailWorld
from tests.email.mails import BOT as BOT_ADDRESS
from tests.email.mails import DANA, ERIN, MALLORY, SAM, new_mail, own_id, reply, text, thread_ids
from tests.email.servers import SmtpSink, free_port
from tests.email.test_email_flow import approvals, deploys, others, requested

BASE = {"BOT_EMAIL_ADDRESS": BOT, "EMAIL_TOKEN_SECRET": SECRET}


def settings(**env: str) -> EmailSettings:
    value = EmailSettings.from_env(BASE | env)
    assert isinstance(value, EmailSettings)
    return value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMAIL_TOKEN_SECRET": ""}, "EMAIL_TOKEN_SECRET is missing"),
        ({"EMAIL_TOKEN_SECRET": "short"}, "shorter than 16"),
        ({"BOT_EMAIL_ADDRESS": "ops-bot"}, "BOT_EMAIL_ADDRESS='ops-bot' is not an address"),
        ({"EMAIL_REQUIRE_DMARC": "true"}, "EMAIL_TRUSTED_AUTHSERV_ID is not set"),
        ({"SMTP_HOST": "smtp.example.com", "SMTP_TLS": "none"}, "SMTP_TLS=none"),
        ({"IMAP_HOST": "imap.example.com", "IMAP_TLS": "none"}, "IMAP_TLS=none"),
    ],
)
def test_unsafe_settings_are_refused_with_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_settings(settings(**env))


def test_production_defaults_pass() -> None:
    assert check_settings(settings(SMTP_HOST="smtp.example.com", IMAP_HOST="imap.example.com")) == SECRET.encode()


def a_mail() -> Any:
    return text_mail(sender=BOT, thread=Thread(SAM, "hi"), body="hello", message_id=f"t1@{BOT.split('@')[1]}")


async def test_required_starttls_fails_loudly_instead_of_sending_in_clear(smtp: SmtpSink) -> None:
    mailer = SmtpMailer(settings(SMTP_PORT=str(smtp.port), SMTP_TLS="starttls"), timeout=5)
    with pytest.raises(ConfigError, match="SMTP_TLS=starttls"):
        await mailer.send(a_mail())
    assert smtp.sent == []


async def test_an_unreachable_smtp_server_is_a_retryable_channel_error() -> None:
    mailer = SmtpMailer(settings(SMTP_PORT=str(free_port()), SMTP_TLS="none"), timeout=5)
    with pytest.raises(ChannelError, match="sending mail via 127.0.0.1"):
        await mailer.send(a_mail())


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("550 5.1.1 no such user", True),
        ("450 4.2.0 greylisted, try again later", False),
    ],
)
async def test_a_refused_recipient_is_refused_for_good_only_on_a_5xx(
    smtp: SmtpSink, answer: str, refused: bool
) -> None:
    """A 5xx is parked at once (retrying cannot help); a 4xx, e.g. greylisting, is retried."""
    smtp.rcpt_refusals.append(answer)
    mailer = SmtpMailer(settings(SMTP_PORT=str(smtp.port), SMTP_TLS="none"), timeout=5)
    with pytest.raises(ChannelError) as failed:
        await mailer.send(a_mail())
    assert isinstance(failed.value, DeliveryRefused) is refused and smtp.sent == []


@pytest.fixture
async def auth_smtp() -> AsyncIterator[tuple[SmtpSink, list[str]]]:
    sink, logins = SmtpSink(), []

    def authenticate(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append(data.login.decode())
        ok = data.password == b"right"
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="smtp.test", authenticator=authenticate, auth_require_tls=False), "127.0.0.1", 0
    )
    sink.port = server.sockets[0].getsockname()[1]
    yield sink, logins
    server.close()
    await server.wait_closed()


async def test_smtp_logs_in_with_the_configured_account(auth_smtp) -> None:
    sink, logins = auth_smtp
    env = {"SMTP_PORT": str(sink.port), "SMTP_TLS": "none", "SMTP_USER": "bot"}
    await SmtpMailer(settings(**env, SMTP_PASSWORD="right"), timeout=5).send(a_mail())
    assert logins == ["bot"] and len(sink.sent) == 1
    with pytest.raises(ConfigError, match="check SMTP_USER and SMTP_PASSWORD"):
        await SmtpMailer(settings(**env, SMTP_PASSWORD="wrong"), timeout=5).send(a_mail())


DMARC = {"EMAIL_REQUIRE_DMARC": "true", "EMAIL_TRUSTED_AUTHSERV_ID": "mx.example.com"}
PASS = "mx.example.com; spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com"
FAIL = "mx.example.com; spf=fail smtp.mailfrom=example.com; dmarc=fail header.from=example.com"


async def test_with_dmarc_required_only_verified_replies_count(make_world, tmp_path) -> None:
    w: MailWorld = await make_world(email_env=DMARC)
    request = new_mail(SAM, "/deploy api 1.4.2 production", Authentication_Results=PASS)
    await w.deliver(request)
    approval = (await w.until(lambda: approvals(w, DANA)))[0]
    # The topmost header from our MX says fail; a "pass" the sender wrote below it does not count.
    forged = reply(approval, DANA, "APPROVE", Authentication_Results=FAIL)
    forged["Authentication-Results"] = PASS
    await w.deliver(forged)
    refusal = (await w.until(lambda: others(w, DANA)))[0]
    assert "could not be verified as coming from dana@example.com" in text(refusal) and deploys(tmp_path) == []
    await w.deliver(reply(approval, DANA, "APPROVE", Authentication_Results=PASS))
    await w.until(lambda: deploys(tmp_path))


async def test_with_dmarc_required_an_unverified_request_is_ignored_silently(make_world) -> None:
    w: MailWorld = await make_world(email_env=DMARC)
    await w.deliver(new_mail(MALLORY, "/status api staging"))  # nobody vouches for this From
    await w.deliver(new_mail(SAM, "/status web staging", Authentication_Results=PASS))
    await w.until(lambda: w.smtp.to(SAM))
    await w.settle()
    assert w.smtp.to(MALLORY) == [] and await w.h.wiring.store.list_threads() != []
    assert [t.requester for t in await w.h.wiring.store.list_threads()] == [f"email:{SAM}"]


async def test_auto_replies_and_our_own_mail_are_never_answered(make_world) -> None:
    w: MailWorld = await make_world()
    await w.deliver(new_mail(SAM, "I am on holiday", Auto_Submitted="auto-replied"))
    await w.deliver(new_mail(BOT_ADDRESS, "/status api staging"))
    await w.deliver(new_mail(SAM, "/status web staging"))
    await w.until(lambda: w.smtp.to(SAM))
    await w.settle()
    assert len(w.smtp.to(SAM)) == 1 and w.smtp.to(BOT_ADDRESS) == []


async def test_a_refusal_by_the_core_is_mailed_to_that_person_only(make_world, tmp_path) -> None:
    """Two approvers answer at once: both replies pass the mail checks, the core decides once."""
    w: MailWorld = await make_world()
    _, approval = await requested(w)
    erin_approval = (await w.until(lambda: approvals(w, ERIN)))[0]
    await w.stop()
    erin_reply = reply(erin_approval, ERIN, "APPROVE")
    await w.deliver(reply(approval, DANA, "APPROVE"))
    await w.deliver(erin_reply)
    await w.start()
    await w.until(lambda: w.channel is not None and w.channel.mailbox.checks, drain=False)  # both enqueued
    refusal = (await w.until(lambda: others(w, ERIN)))[0]
    assert re.search(r"already approved by dana@example\.com at \d{4}-\d\d-\d\d \d\d:\d\d UTC;", text(refusal))
    assert thread_ids(refusal)[0] == [own_id(erin_reply)]
    await w.settle()
    assert deploys(tmp_path) == [("api", "1.4.2", f"email:{SAM}")]
    assert not any("already approved" in text(m) for m in w.smtp.to(SAM))
