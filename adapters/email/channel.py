"""The email channel: requests by mail, answers in the same thread, approvals answered by reply.

- Receiving: `MailboxWatcher` (IMAP IDLE, reconnect with backoff, a UID mark per mailbox and
  UIDVALIDITY in Redis) hands each new mail to `Inbound`, which publishes a MessageTrigger
  (conversation = the root Message-ID) or, for a verified approval reply, a DecisionTrigger.
- Sending: `render` turns the `email` outbox into mail via SMTP, threaded with In-Reply-To
  and References, each with a plain-text and an HTML part (`bodies`); people and times are
  written readable, in EMAIL_TIMEZONE (`readable`); an ApprovalRequest becomes one signed
  approval mail per `email:` approver.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
from dataclasses import replace

from adapters.email.bodies import body_for
from adapters.email.compose import Mailer, SmtpMailer, Thread, approval_mail, text_mail
from adapters.email.imap import DEFAULT_TIMING, Connect, ImapClient, ImapTiming, MailboxWatcher
from adapters.email.inbound import CHANNEL, Inbound
from adapters.email.readable import Readable, zone
from adapters.email.security import Tokens
from adapters.email.state import EmailState
from config.channels import EmailSettings
from core import ApprovalRequest, Bus, ConfigError, Outbound, Reply, Store, ToolRegistry, deliver, new_id

MIN_SECRET_CHARS = 16

__all__ = ["EmailChannel", "ImapTiming", "body_of", "check_settings"]


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: EmailSettings) -> bytes:
    """Refuse unsafe configurations, naming the variable and the fix; returns the token secret."""
    if "@" not in settings.address:
        raise ConfigError(
            f"BOT_EMAIL_ADDRESS={settings.address!r} is not an address; set it to e.g. ops-bot@example.com"
        )
    secret = settings.token_secret.get_secret_value() if settings.token_secret else ""
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"EMAIL_TOKEN_SECRET is missing or shorter than {MIN_SECRET_CHARS} characters; set it to a long random "
            "string (it signs approval reply tokens), or unset BOT_EMAIL_ADDRESS to turn the email channel off"
        )
    if settings.require_dmarc and not settings.trusted_authserv_id:
        raise ConfigError(
            "EMAIL_REQUIRE_DMARC is on but EMAIL_TRUSTED_AUTHSERV_ID is not set; set it to the "
            "authserv-id your MX writes in Authentication-Results (e.g. mx.example.com)"
        )
    for name, tls, host in (
        ("SMTP", settings.smtp_tls, settings.smtp_host),
        ("IMAP", settings.imap_tls, settings.imap_host),
    ):
        if tls == "none" and not _loopback(host):
            raise ConfigError(
                f"{name}_TLS=none sends mail and passwords in clear to {host}; it is allowed only on loopback. "
                f"Use {name}_TLS={'starttls or implicit' if name == 'SMTP' else 'implicit'}"
            )
    zone(settings.timezone)  # a name that is not a zone fails here, naming EMAIL_TIMEZONE
    return secret.encode()


def body_of(outbound: Outbound, readable: Readable | None = None) -> str:
    """The plain-text body of a message in a conversation."""
    return body_for(outbound, readable or Readable()).plain


class EmailChannel:
    """Satisfies core.ChannelAdapter; clients (SMTP sender, IMAP connector) may be injected."""

    name = CHANNEL

    def __init__(
        self,
        settings: EmailSettings,
        *,
        bus: Bus,
        store: Store,
        tools: ToolRegistry,
        mailer: Mailer | None = None,
        timing: ImapTiming = DEFAULT_TIMING,
        connect: Connect = ImapClient.connect,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.state = EmailState(store.redis)
        self.tokens = Tokens(check_settings(settings), settings.address)
        self.readable = Readable(zone(settings.timezone))
        self.domain = self.tokens.domain
        self.mailer = mailer or SmtpMailer(settings, timing.timeout)
        self.inbound = Inbound(
            settings, bus=bus, store=store, tools=tools, state=self.state, tokens=self.tokens, readable=self.readable
        )
        self.mailbox = MailboxWatcher(settings, self.state, self.inbound.receive, timing, connect)

    @property
    def healthy(self) -> bool:
        """Connected to the mailbox (false while reconnecting); sending is checked per mail."""
        return self.mailbox.connected

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the mailbox and deliver the outbox until `stop`; a crash of either ends both."""
        consumer = f"email-{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"
        async with asyncio.TaskGroup() as group:
            group.create_task(self.mailbox.run(stop))
            group.create_task(deliver(self.bus, self.name, self.render, stop, consumer))

    async def render(self, outbound: Outbound) -> None:
        if isinstance(outbound, Reply) and not outbound.final:
            return  # progress: a mail per step would be noise; the outcome follows
        if isinstance(outbound, ApprovalRequest):
            await self._approval_mails(outbound)
        thread = await self._thread_for(outbound)
        if thread is None:
            return  # e.g. an approval request notified from a thread in another channel
        message_id = f"{outbound.id}@{self.domain}"
        body = body_for(outbound, self.readable)
        mail = text_mail(
            sender=self.settings.address, thread=thread, body=body.plain, message_id=message_id, html_body=body.html
        )
        await self.mailer.send(mail)
        await self.state.remember(message_id, outbound.conversation)

    async def _thread_for(self, outbound: Outbound) -> Thread | None:
        """To whom and under which mail: a refusal answers the mail refused; the rest the newest in the thread."""
        if outbound.to:
            address = outbound.to.removeprefix("email:")
            return Thread.from_fields(outbound.reply_to, to=address) if outbound.to.startswith("email:") else None
        thread = Thread.from_fields(outbound.reply_to)
        conversation = await self.state.conversation(outbound.conversation) if thread else None
        if thread is None or conversation is None:
            return thread
        return replace(thread, in_reply_to=conversation.last, references=tuple(conversation.refs))

    async def _approval_mails(self, request: ApprovalRequest) -> None:
        """One mail per `email:` approver, each with its own token; a retry skips those already sent. A
        request asked again (its snooze ended) is mailed once more, once per such card."""
        for approver in request.approvers:
            sent_as = f"{approver}#{request.id}" if request.asked_again else approver
            if not approver.startswith("email:") or await self.state.approval_mail(request.approval_id, sent_as):
                continue
            token = self.tokens.sign(request.approval_id, approver)
            digest = hashlib.sha256(approver.encode()).hexdigest()[:10]
            again = f".{request.id}" if request.asked_again else ""
            message_id = f"appr.{request.approval_id}.{digest}{again}@{self.domain}"
            mail = approval_mail(
                sender=self.settings.address,
                to=approver.removeprefix("email:"),
                request=request,
                subject_tag=self.tokens.subject_tag(token),
                reply_address=self.tokens.reply_address(token),
                message_id=message_id,
                readable=self.readable,
            )
            await self.mailer.send(mail)
            await self.state.record_approval_mail(request.approval_id, sent_as, message_id)
