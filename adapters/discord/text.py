"""What the Discord channel writes: people and times rendered natively, messages under 2000 characters.

Core writes people and times as markers (`core.people`); everything shown on Discord passes
through `native` first, so a Discord user is a mention (shown as their name, pinging nobody:
the client sends no allowed mentions) and a time is a Discord timestamp the reader's client
shows in their own zone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core import Notice, people

MESSAGE_LIMIT = 2000
FENCE_ROOM = 32  # room to close a code block at the end of a piece and reopen it in the next
LEVEL_MARK = {"info": "", "warning": "⚠️ ", "error": "❌ "}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def discord_user(identity: str) -> int | None:
    kind, _, user = identity.partition(":")
    return int(user) if kind == "discord" and user.isdigit() else None


def person(identity: str) -> str:
    """A Discord user as a mention; anyone else by the readable name core gives them."""
    user = discord_user(identity)
    return f"<@{user}>" if user is not None else people.display(identity)


def epoch(at: datetime) -> int:
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


def stamp(at: datetime) -> str:
    """A full date and time, shown in the reader's zone."""
    return f"<t:{epoch(at)}:f>"


def relative(at: datetime) -> str:
    """ "in 59 minutes" / "3 minutes ago", kept current by the reader's client."""
    return f"<t:{epoch(at)}:R>"


def native(text: str) -> str:
    """Core's text with every person and time marker in Discord's own form."""
    return people.render(text, person, stamp)


def _short_lines(text: str, width: int) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        out += [line[start : start + width] for start in range(0, len(line), width)] or [""]
    return out


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at line ends where possible.

    A code block cut in two is closed at the end of one piece and reopened in the next, so
    long tool output stays readable.
    """
    if not text.strip():
        return ["(empty)"]
    if len(text) <= limit:
        return [text]
    budget = limit - FENCE_ROOM
    pieces: list[str] = []
    lines: list[str] = []
    size = 0
    fence = ""  # the opening line of the code block we are in, if any
    for line in _short_lines(text, budget):
        if lines and size + len(line) + 1 > budget:
            pieces.append("\n".join(lines) + ("\n```" if fence else ""))
            lines = [fence] if fence else []
            size = len(fence) + 1 if fence else 0
        lines.append(line)
        size += len(line) + 1
        if line.lstrip().startswith("```"):
            fence = "" if fence else clip(line.strip(), FENCE_ROOM - 8)
    pieces.append("\n".join(lines))
    return [piece for piece in pieces if piece.strip()]


def notice_text(notice: Notice) -> str:
    return LEVEL_MARK.get(notice.level, "") + native(notice.text)
