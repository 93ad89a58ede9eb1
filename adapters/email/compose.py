"""Outgoing mail: replies threaded into a conversation, approval mails, and the SMTP sender."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiosmtplib

from adapters.email.bodies import quorum_rows
from adapters.email.parse import bare_subject
from adapters.email.readable import Readable, html_blocks, html_document, html_table, person
from config.channels import EmailSettings
from core import ApprovalRequest, ChannelError, ConfigError, DeliveryRefused

SUBJECT_CHARS = 150
INSTRUCTIONS = (
    "To answer, reply to this mail with, on the first line:\n"
    "  APPROVE\n"
    "or\n"
    "  REJECT and a reason, e.g. REJECT not during the freeze\n"
    "or, to be asked again later without deciding:\n"
    "  SNOOZE 30m\n"
    "Only the first line counts; anything else there is not read as an answer and you will be asked again."
)


def one_line(text: str, limit: int = SUBJECT_CHARS) -> str:
    """Header-safe: no line breaks (they would start a new header), bounded length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Thread:
    """Where a mail goes: the recipient and the conversation it continues."""

    to: str
    subject: str
    in_reply_to: str = ""
    references: tuple[str, ...] = ()

    def fields(self) -> dict[str, str]:
        """As a trigger's `reply_to` (strings only), so a later message can answer in this thread."""
        return {
            "address": self.to,
            "last": self.in_reply_to,
            "refs": " ".join(self.references),
            "subject": self.subject,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str], to: str | None = None) -> Thread | None:
        address = to or fields.get("address", "")
        if not address:
            return None
        refs = tuple(fields.get("refs", "").split())
        return cls(to=address, subject=fields.get("subject", ""), in_reply_to=fields.get("last", ""), references=refs)


def _base(sender: str, to: str, subject: str, message_id: str, auto: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = f"<{message_id}>"
    msg["Auto-Submitted"] = auto  # RFC 3834: vacation responders must not answer us (no mail loops)
    return msg


def text_mail(*, sender: str, thread: Thread, body: str, message_id: str, html_body: str | None = None) -> EmailMessage:
    """A mail in the thread: `Re:` subject, In-Reply-To and References set; the plain text, and an HTML
    part (`html_body`, else one made from the text) for clients that show HTML."""
    subject = f"Re: {bare_subject(thread.subject)}" if thread.subject else "Re: your request"
    msg = _base(sender, thread.to, subject, message_id, "auto-replied")
    if thread.in_reply_to:
        msg["In-Reply-To"] = f"<{thread.in_reply_to}>"
    if thread.references:
        msg["References"] = " ".join(f"<{ref}>" for ref in thread.references)
    msg.set_content(body)
    msg.add_alternative(html_document(html_body if html_body is not None else html_blocks(body)), subtype="html")
    return msg


def approval_rows(request: ApprovalRequest, readable: Readable) -> list[tuple[str, str]]:
    """(label, value) rows shown in both the plain-text and the HTML part."""
    return [
        ("Tool", request.tool),
        ("Arguments", json.dumps(request.args, indent=2, sort_keys=True, ensure_ascii=False)),
        ("Why", readable.text(request.reason) or "(no reason given)"),
        *preview_rows(request),
        ("Requested by", person(request.requester)),
        ("Expires", readable.time(request.expires_at)),
        *quorum_rows(request, readable),
        ("Approval id", request.approval_id),
        *([("Thread", request.thread_url)] if request.thread_url else []),
    ]


def preview_rows(request: ApprovalRequest) -> list[tuple[str, str]]:
    """The tool's preview (its plan before apply), or the line saying it failed."""
    if request.preview_failed:
        return [("Preview failed", request.preview)]
    if not request.preview:
        return []
    rows = [("Preview", request.preview)]
    if request.preview_more:
        where = f": {request.thread_url}" if request.thread_url else ""
        rows.append(("Whole preview", f"{request.preview_more} more characters, in the request thread{where}"))
    return rows


def approval_mail(
    *,
    sender: str,
    to: str,
    request: ApprovalRequest,
    subject_tag: str,
    reply_address: str,
    message_id: str,
    readable: Readable,
) -> EmailMessage:
    """The request to one approver: exact arguments, reason, requester, expiry, how to answer."""
    args = " ".join(f"{key}={value}" for key, value in sorted(request.args.items()))
    msg = _base(sender, to, f"{subject_tag} {request.tool} {args}", message_id, "auto-generated")
    msg["Reply-To"] = reply_address
    rows = approval_rows(request, readable)
    intro = f"{person(request.requester)} needs your approval to run {request.tool}."
    plain = [intro, ""] + [f"{label}:\n{value}\n" for label, value in rows] + [INSTRUCTIONS]
    msg.set_content("\n".join(plain))
    steps = "<br>".join(html.escape(line) for line in INSTRUCTIONS.splitlines())
    table = html_table(rows, code=frozenset({"Arguments", "Preview"}))
    msg.add_alternative(
        html_document(f'<p style="margin:0 0 12px">{html.escape(intro)}</p>{table}<p style="margin:0">{steps}</p>'),
        subtype="html",
    )
    return msg


def _permanent(exc: aiosmtplib.SMTPException) -> bool:
    """A 5xx answer (RFC 5321: do not repeat the same transaction), also when it refused the recipient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(refusal.code >= 500 for refusal in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """Sends each mail on its own connection, with TLS as SMTP_TLS says (`none` only on loopback)."""

    def __init__(self, settings: EmailSettings, timeout: float = 30) -> None:
        self.settings = settings
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                sender=s.address,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_tls == "implicit",
                start_tls=s.smtp_tls == "starttls",  # True: a server that does not offer STARTTLS fails loudly
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ConfigError(
                f"SMTP login as {s.smtp_user!r} failed ({exc}); check SMTP_USER and SMTP_PASSWORD"
            ) from exc
        except aiosmtplib.SMTPException as exc:
            # aiosmtplib raises a bare SMTPException when the server does not offer STARTTLS.
            if isinstance(exc, aiosmtplib.SMTPNotSupported) or (s.smtp_tls == "starttls" and "STARTTLS" in str(exc)):
                raise ConfigError(
                    f"{s.smtp_host}:{s.smtp_port} does not support what SMTP_TLS={s.smtp_tls} needs ({exc}); "
                    "use SMTP_TLS=implicit on port 465 or a server that offers STARTTLS"
                ) from exc
            if _permanent(exc):
                raise DeliveryRefused(
                    f"{s.smtp_host}:{s.smtp_port} refused the mail for good ({exc}); "
                    "check the recipient's address and the server's policy"
                ) from exc
            raise ChannelError(f"sending mail via {s.smtp_host}:{s.smtp_port} failed: {exc}") from exc
        except OSError as exc:
            raise ChannelError(f"sending mail via {s.smtp_host}:{s.smtp_port} failed: {exc}") from exc
