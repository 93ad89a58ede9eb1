"""Mail as people's clients write it: new mails and replies that quote what they answer."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from adapters.email.parse import message_ids

BOT = "bot@example.com"
SAM = "sam@example.com"  # asks for things
DANA = "dana@example.com"  # on call
ERIN = "erin@example.com"  # on call
MALLORY = "mallory@example.net"  # not on call


def new_mail(sender: str, body: str, subject: str = "a request", to: str = BOT, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain=sender.partition("@")[2])
    msg.set_content(body)
    return msg


def text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def reply(
    original: EmailMessage, sender: str, body: str, *, to: str | None = None, subject: str | None = None, **headers: str
) -> EmailMessage:
    """What a mail client sends: to Reply-To (else From), `Re:` subject, threaded, the original quoted."""
    quoted = "\n".join(f"> {line}" for line in text(original).splitlines())
    written = f"{body}\n\nOn {original['Date']}, {original['From']} wrote:\n{quoted}\n"
    msg = new_mail(
        sender,
        written,
        subject or f"Re: {original['Subject']}",
        to or str(original.get("Reply-To") or original["From"]),
        **headers,
    )
    refs = [*message_ids(original.get("References")), *message_ids(original["Message-ID"])]
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = " ".join(f"<{ref}>" for ref in refs)
    return msg


def thread_ids(msg: EmailMessage) -> tuple[list[str], list[str]]:
    """(In-Reply-To ids, References ids)."""
    return message_ids(msg.get("In-Reply-To")), message_ids(msg.get("References"))


def own_id(msg: EmailMessage) -> str:
    return message_ids(msg["Message-ID"])[0]
