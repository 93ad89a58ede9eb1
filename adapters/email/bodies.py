"""What a mail in a conversation says, as plain text and as HTML: replies, questions, receipts, notices.

Every text core wrote passes through `Readable.text` (people and times readable); the HTML part
says the same as the plain part, escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from adapters.email.readable import Readable, html_blocks, html_table, person
from core import ApprovalRequest, DecisionReceipt, Notice, Outbound, Question, Reply, people


@dataclass(frozen=True)
class Body:
    plain: str
    html: str  # the inside of the HTML part's body


def _from_text(plain: str) -> Body:
    return Body(plain, html_blocks(plain))


def how_to_choose(count: int) -> str:
    """`Reply with 1, 2 or 3, or write your own answer.`"""
    numbers = [str(n) for n in range(1, count + 1)]
    listed = numbers[0] if count == 1 else f"{', '.join(numbers[:-1])} or {numbers[-1]}"
    return f"Reply with {listed}, or write your own answer."


def question_body(question: Question, readable: Readable) -> Body:
    asked = readable.text(question.question)
    if not question.options:
        return _from_text(f"{asked}\n\nAnswer by replying to this mail.")
    choices = [f"{n}. {option}" for n, option in enumerate(question.options, 1)]
    hint = how_to_choose(len(question.options))
    items = "".join(f'<li style="margin:0 0 4px">{html.escape(option)}</li>' for option in question.options)
    markup = f'{html_blocks(asked)}<ol style="margin:0 0 12px">{items}</ol>{html_blocks(hint)}'
    return Body("\n".join([asked, "", *choices, "", hint]), markup)


def receipt_sentence(receipt: DecisionReceipt, readable: Readable) -> str:
    """Who decided what, when, and the reason given; a rejection is a decision, not a failure."""
    what = receipt.tool or f"approval {receipt.approval_id}"
    at = readable.time(receipt.at)
    if receipt.decision == "expire":
        return f"The approval for {what} expired at {at} without a decision; it did not run."
    verb = "approved" if receipt.decision == "approve" else "rejected"
    sentence = f"{person(receipt.by)} {verb} {what} at {at}"
    if receipt.comment:
        return f"{sentence}: {readable.text(receipt.comment)}"
    return f"{sentence}."


def waiting_for(approvers: list[str]) -> str:
    """The approvers mail can reach by name; the others counted."""
    mailed = people.reachable(approvers, "email")
    others = len(approvers) - len(mailed)
    names = ", ".join(person(a) for a in mailed)
    elsewhere = "" if not others else ("1 on another channel" if others == 1 else f"{others} on other channels")
    if names and elsewhere:
        return f"{names} and {elsewhere}"
    return names or elsewhere or "nobody is configured"


def pending_note(request: ApprovalRequest, readable: Readable) -> Body:
    """To the requester, in their thread: what waits for whom, until when (sent again as a quorum's
    approvals arrive, saying how many it has)."""
    rows = [("Waiting for", waiting_for(request.approvers)), *quorum_rows(request, readable)]
    rows += [("Expires", readable.time(request.expires_at)), ("Approval id", request.approval_id)]
    intro = f"{request.tool} needs approval before it runs. You will hear the outcome in this thread."
    if request.approved_by:
        intro = f"{request.tool} has {len(request.approved_by)} of the {request.needed} approvals it needs."
    plain = intro + "\n\n" + "\n".join(f"{label}: {value}" for label, value in rows)
    return Body(plain, f'<p style="margin:0 0 12px">{html.escape(intro)}</p>{html_table(rows)}')


def quorum_rows(request: ApprovalRequest, readable: Readable) -> list[tuple[str, str]]:
    """The quorum, the wait and the digest, where the request has them."""
    rows = []
    if request.needed > 1:
        names = ", ".join(person(identity) for identity in request.approved_by)
        text = f"{len(request.approved_by)} of {request.needed}" + (f" ({names})" if names else "")
        if request.open_groups:
            text += f"; still needs one from {', '.join(request.open_groups)}"
        rows.append(("Approvals", text))
    if request.wait_until is not None:
        rows.append(("Can be approved from", readable.time(request.wait_until)))
    if request.digest:
        rows.append(("Digest", request.short))
    return rows


def body_for(outbound: Outbound, readable: Readable) -> Body:
    match outbound:
        case Reply() | Notice():
            return _from_text(readable.text(outbound.text))
        case Question():
            return question_body(outbound, readable)
        case DecisionReceipt():
            return _from_text(receipt_sentence(outbound, readable))
        case ApprovalRequest():
            return pending_note(outbound, readable)
