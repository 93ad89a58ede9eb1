"""People and times in text meant for humans.

Core never writes a raw identity (`slack:T0PEER001:U0MALLORY`) or an ISO timestamp into a notice,
a question or a tool error: it writes a marker (`who(identity)`, `when(at)`), and each channel
renders the markers in its own native form with `render` (a Slack mention, a Discord timestamp,
an email address, the browser's local time). The model sees the markers rendered for the thread's
channel, so what it repeats renders there too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

WHO = re.compile(r"<who:([^<>\s]+)>")
WHEN = re.compile(r"<when:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)>")
GROUP = "group"


def who(identity: str) -> str:
    return f"<who:{identity}>"


def when(at: datetime) -> str:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return f"<when:{at.strftime('%Y-%m-%dT%H:%M:%SZ')}>"


def platform(identity: str) -> str:
    """Where an identity lives: `slack`, `discord`, `email`, `cli`, `api`, `hook`, `group`, ..."""
    return identity.partition(":")[0]


def display(identity: str) -> str:
    """A readable name for someone shown outside their own platform (or anywhere plain text is all there is)."""
    kind, _, rest = identity.partition(":")
    if not rest:
        return identity
    if kind == "slack":
        return rest.rpartition(":")[2]  # slack:TEAM:USER: the user id is all the name core has
    if kind == GROUP:
        return f"the {rest} group"
    return rest


def plain_time(at: datetime) -> str:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.strftime("%Y-%m-%d %H:%M UTC")


def render(text: str, person: Callable[[str], str], time: Callable[[datetime], str]) -> str:
    """`text` with every marker replaced by `person(identity)` or `time(at)`."""
    if "<" not in text:
        return text
    text = WHO.sub(lambda match: person(match.group(1)), text)
    return WHEN.sub(
        lambda match: time(datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)), text
    )


def plain(text: str) -> str:
    """The markers as plain words: the terminal's rendering, and every channel's fallback."""
    return render(text, display, plain_time)


def reachable(identities: Iterable[str], channel: str) -> list[str]:
    """The identities a channel can show as people: its own platform's, and groups (shown by name)."""
    return [identity for identity in identities if platform(identity) in (channel, GROUP)]


def mention(identity: str, channel: str) -> str:
    """How a message written for `channel` names a person so that it renders there: a Slack or
    Discord mention for that platform's users, the readable name for everyone else. The model sees
    people this way, so the names it repeats render in the thread's channel."""
    if platform(identity) == channel == "slack":
        return f"<@{display(identity)}>"
    if platform(identity) == channel == "discord" and display(identity).isdigit():
        return f"<@{display(identity)}>"
    return display(identity)
