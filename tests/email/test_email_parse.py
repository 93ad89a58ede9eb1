"""Reading mail: the newest text, thread ids, strict first-line answers, tokens and DMARC verdicts."""

from __future__ import annotations

import pytest

from adapters.email.parse import Answer, bare_subject, newest_text, parse_answer, parse_mail, parse_snooze
from adapters.email.security import Tokens, authentication_failure
from tests.email.mails import BOT, DANA, SAM, new_mail, reply

GMAIL_QUOTE = (
    "APPROVE\n\nOn Mon, 23 Nov 2026 at 14:00, Ops Bot <bot@example.com> wrote:\n> Reply APPROVE\n> or REJECT\n"
)
OUTLOOK_QUOTE = (
    "Reject not during the freeze\r\n\r\nFrom: Ops Bot <bot@example.com>\r\nSent: Monday, November 23, 2026 2:00 PM\r\n"
    "To: Dana <dana@example.com>\r\nSubject: [Approval x] deploy\r\n\r\nReply APPROVE\r\n"
)
GERMAN_QUOTE = "Ja klar\n\nAm 23.11.2026 um 14:00 schrieb Ops Bot <bot@example.com>:\n> APPROVE?\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GMAIL_QUOTE, "APPROVE"),
        (OUTLOOK_QUOTE, "Reject not during the freeze"),
        (GERMAN_QUOTE, "Ja klar"),
        ("restart the worker pool\n\n-- \nSam\nOps team\n", "restart the worker pool"),
        ("approve\n> APPROVE\n> quoted without a header line\n", "approve"),
    ],
)
def test_newest_text_drops_quotes_and_signatures(body: str, expected: str) -> None:
    assert newest_text(body) == expected


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("APPROVE", Answer(True, "")),
        ("approved.", Answer(True, "")),
        ("Yes!", Answer(True, "")),
        ("APPROVE\nlooks right to me", Answer(True, "looks right to me")),
        ("REJECT not during the freeze", Answer(False, "not during the freeze")),
        ("rejected: wrong version", Answer(False, "wrong version")),
        ("No\nwe ship on Monday", Answer(False, "we ship on Monday")),
        ("REJECT", Answer(False, "")),
        ("yes, but only after 5pm", None),
        ("approve if the tests pass", None),
        ("Looks fine\nAPPROVE", None),
        ("nope", None),
        ("not now", None),
        ("", None),
        ("\n\n", None),
        ("?", None),
    ],
)
def test_only_an_exact_first_line_is_an_answer(text: str, answer: Answer | None) -> None:
    assert parse_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("SNOOZE 30m", "30m"),
        ("snooze for 1h\nbusy until then", "1h"),
        ("Not now.", ""),
        ("LATER: 2h", "2h"),
        ("snooze it until after lunch please", None),
        ("APPROVE", None),
    ],
)
def test_a_snooze_reply_is_read_from_the_first_line(text: str, duration: str | None) -> None:
    assert parse_snooze(text) == duration
    assert parse_answer(text) is None or duration is None, "a snooze is never read as a decision"


def test_a_reply_is_read_with_its_thread_ids_and_recipients() -> None:
    original = new_mail(SAM, "hello")
    mail = parse_mail(bytes(reply(original, DANA, "APPROVE", Cc="Sam <SAM@example.com>")))
    assert mail.sender == DANA and mail.text == "APPROVE"
    assert mail.in_reply_to == mail.references and mail.parents == mail.in_reply_to
    assert mail.recipients == [SAM, SAM] and not mail.automatic


def test_auto_replies_and_bounces_are_marked_automatic() -> None:
    assert parse_mail(bytes(new_mail(SAM, "I am away", Auto_Submitted="auto-replied"))).automatic
    assert parse_mail(bytes(new_mail(SAM, "digest", Precedence="bulk"))).automatic


def test_an_html_only_mail_is_read_as_text() -> None:
    msg = new_mail(SAM, "x")
    msg.set_content("<html><body><p>restart <b>api</b></p><blockquote>old</blockquote></body></html>", subtype="html")
    assert parse_mail(bytes(msg)).text == "restart api"


def test_a_mail_without_message_id_gets_a_stable_one() -> None:
    raw = b"From: sam@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    assert parse_mail(raw).message_id == parse_mail(raw).message_id != parse_mail(raw + b"x").message_id


def test_subject_prefixes_are_stripped_once() -> None:
    assert bare_subject("Re: AW: Fwd:  ship it") == "ship it"


def test_tokens_bind_the_approval_to_one_approver() -> None:
    tokens = Tokens(b"k" * 32, BOT)
    token = tokens.sign("ab12cd34", f"email:{DANA}")
    assert tokens.verify(token, f"email:{DANA}") and not tokens.verify(token, f"email:{SAM}")
    assert not Tokens(b"other-secret-000", BOT).verify(token, f"email:{DANA}")
    assert tokens.find([tokens.reply_address(token).upper()], "") == [token]
    assert tokens.find([], f"Re: AW: {tokens.subject_tag(token)} deploy") == [token]
    assert tokens.find(["bot+appr-ab12cd34.zz@example.com", "bot@example.org"], "[Approval ab12cd34]") == []
    assert tokens.is_ours("Bot+anything@Example.com") and not tokens.is_ours("bot@example.org")


TRUSTED = "mx.example.com"


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ([f"{TRUSTED}; dmarc=pass (p=reject) header.from=example.com"], None),
        ([f"{TRUSTED}; dkim=pass header.d=example.com header.s=s1; dmarc=none"], None),
        ([f"{TRUSTED}; dkim=pass header.d=example.com"], None),
        ([f"{TRUSTED}; dkim=pass header.d=evil.example.net; dmarc=fail header.from=example.com"], "no DMARC pass"),
        (
            [f"{TRUSTED}; dmarc=fail header.from=example.com", f"{TRUSTED}; dmarc=pass header.from=example.com"],
            "no DMARC pass",
        ),
        (["mx.evil.net; dmarc=pass header.from=example.com"], "no Authentication-Results header"),
        (["mx.evil.net; dmarc=pass", f"{TRUSTED}; spf=pass smtp.mailfrom=example.com"], "no DMARC pass"),
        ([f"{TRUSTED}; dkim="], "could not be read"),
        ([], "no Authentication-Results header"),
    ],
)
def test_only_the_topmost_trusted_authentication_results_counts(headers: list[str], verdict: str | None) -> None:
    failure = authentication_failure(headers, TRUSTED, "example.com")
    assert failure == verdict if verdict is None else verdict in (failure or "")


def test_a_subdomain_aligns_with_its_organisational_dkim_domain() -> None:
    assert authentication_failure([f"{TRUSTED}; dkim=pass header.d=example.com"], TRUSTED, "ops.example.com") is None
    assert authentication_failure([f"{TRUSTED}; dkim=pass header.d=ops.example.com"], TRUSTED, "example.com")
