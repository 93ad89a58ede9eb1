"""Reading inbound mail: addresses, thread ids, the newest text, and strict approval answers.

Pure functions over bytes and strings; nothing here talks to a server.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from html.parser import HTMLParser

from mailparser_reply import EmailReplyParser  # untyped

REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs"]
MSGID = re.compile(r"<([^<>\s]+)>")
SUBJECT_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
APPROVE_WORDS = {"approve", "approved", "yes"}
REJECT = re.compile(r"^(reject|rejected|no)(?:[\s:;,.!-]+(.*))?$", re.IGNORECASE)
SNOOZE = re.compile(r"^(?:snooze|not now|later)(?:[\s:;,-]+(?:for\s+)?(\S+))?$", re.IGNORECASE)  # "not now"
COMMENT_CHARS = 500
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "pre"}


@dataclass(frozen=True)
class InboundMail:
    message_id: str  # normalised: no angle brackets
    sender: str  # the From address, lowercased; "" unless From names exactly one address
    subject: str
    in_reply_to: list[str]
    references: list[str]
    recipients: list[str]  # To, Cc, Delivered-To, X-Original-To addresses, lowercased
    text: str  # the newest part of the body: quoted text and signature removed
    auth_results: list[str]  # Authentication-Results values, topmost first
    automatic: bool  # an auto-reply, a bounce or bulk mail: never answered

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]

    @property
    def parents(self) -> list[str]:
        """Ids this mail answers, nearest first: In-Reply-To, then References from the newest."""
        ordered = [*self.in_reply_to, *reversed(self.references)]
        return list(dict.fromkeys(ordered))


@dataclass(frozen=True)
class Answer:
    approve: bool
    comment: str


def message_ids(value: str | None) -> list[str]:
    """`<a@x> <b@y>` -> ["a@x", "b@y"]; tolerant of folding and doubled brackets."""
    return MSGID.findall(str(value or ""))


def bare_subject(subject: str) -> str:
    return SUBJECT_PREFIX.sub("", " ".join(subject.split()))


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "blockquote":
            self.parts.append("> ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    return "".join(parser.parts)


def body_text(msg: EmailMessage) -> str:
    """The text/plain body, else text converted from the HTML body, else ""."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None or not isinstance(part, EmailMessage):
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    text = str(content)
    return html_to_text(text) if part.get_content_type() == "text/html" else text


def newest_text(body: str) -> str:
    """The reply's own words: quoted history, `>` lines and the signature removed."""
    text = body.replace("\r\n", "\n")
    text = text.split("\n-- \n", 1)[0]
    latest = EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text=text)
    lines = [line for line in str(latest or "").splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(lines).strip()


def parse_answer(text: str) -> Answer | None:
    """APPROVE / APPROVED / YES alone on the first line, or REJECT / REJECTED / NO and a reason.

    Anything else (a conditional "yes, but...", a question, an empty reply) is None: ask again.
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or not lines[0]:
        return None
    first, rest = lines[0], "\n".join(lines[1:]).strip()
    if first.rstrip(".!").strip().lower() in APPROVE_WORDS:
        return Answer(approve=True, comment=rest[:COMMENT_CHARS])
    if (match := REJECT.match(first)) is not None:
        reason = (match.group(2) or "").strip() or rest
        return Answer(approve=False, comment=" ".join(reason.split())[:COMMENT_CHARS])
    return None


def parse_snooze(text: str) -> str | None:
    """SNOOZE / NOT NOW / LATER on the first line, with how long (`SNOOZE 30m`): that duration as written
    ("" for the default); None when the first line is no snooze."""
    lines = text.strip().splitlines()
    first = lines[0].strip().rstrip(".!") if lines else ""
    match = SNOOZE.match(first)
    return None if match is None else (match.group(1) or "")


def _is_automatic(msg: EmailMessage) -> bool:
    """RFC 3834 auto-replies, bounces and bulk mail: answering them risks mail loops."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    return (
        auto != "no"
        or precedence in ("bulk", "list", "junk", "auto_reply")
        or msg.get_content_type() == "multipart/report"
        or "X-Autoreply" in msg
        or "X-Autorespond" in msg
    )


def _addresses(msg: EmailMessage, *names: str) -> list[str]:
    values = [str(value) for name in names for value in msg.get_all(name, [])]
    return [address.lower() for _, address in getaddresses(values) if "@" in address]


def parse_mail(raw: bytes) -> InboundMail:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage), "policy.default builds EmailMessage objects"
    own = message_ids(msg.get("Message-ID"))
    senders = _addresses(msg, "From")
    return InboundMail(
        # Without a Message-ID the content itself is the identity, so a re-fetch is still a duplicate.
        message_id=own[0] if own else f"sha256-{hashlib.sha256(raw).hexdigest()[:32]}@missing",
        sender=senders[0] if len(senders) == 1 else "",
        subject=" ".join(str(msg.get("Subject", "")).split()),
        in_reply_to=message_ids(msg.get("In-Reply-To")),
        references=message_ids(" ".join(str(v) for v in msg.get_all("References", []))),
        recipients=_addresses(msg, "To", "Cc", "Delivered-To", "X-Original-To"),
        text=newest_text(body_text(msg)),
        auth_results=[str(value) for value in msg.get_all("Authentication-Results", [])],
        automatic=_is_automatic(msg),
    )
