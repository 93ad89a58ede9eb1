"""Standing grants: "approve the same call for this requester for the next N hours".

Rules (pure: no I/O, no clock; `now` is an argument):
- A grant covers one tool, one requester, and one pattern of arguments: every argument equals the value
  in the approved call, except those the policy lets vary (`grants.vary`), which may take any value.
  An argument the approved call did not give must stay absent (unless it may vary).
- A grant covers nothing once it expired or was revoked.
- Whether the policy in force still allows it (its `when`, who may approve, a quorum) is checked by
  `core.runtime.grants`, which knows the tools; this module only matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.domain.durations import seconds

# `grant`, `grant 4h`, `grant for 4h`, then the rest of the comment: how text channels ask for one.
GRANT_WORDS = re.compile(r"^\s*grant\b(?:\s+(?:for\s+)?(\d+[dhms\d]*))?\s*[,:-]?\s*(.*)$", re.IGNORECASE | re.DOTALL)


class Grant(BaseModel):
    """One standing grant, as stored and listed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grant_id: str
    tool: str
    requester: str  # whom it is for: their later calls match, nobody else's
    args: dict[str, Any]  # the approved call's arguments
    vary: list[str] = []  # arguments that may take any value (the policy's `grants.vary`)
    granted_by: str
    approval_id: str  # the request it was given on
    thread_id: str
    channel: str = ""  # where the grantor answered
    created_at: datetime
    expires_at: datetime
    revoked_by: str = ""
    revoked_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def covers(self, tool: str, requester: str, args: dict[str, Any], now: datetime) -> bool:
        """The grant lets this call run without a card now."""
        if tool != self.tool or requester != self.requester or not self.live(now):
            return False
        names = set(self.args) | set(args)
        return all(name in self.vary or args.get(name, _ABSENT) == self.args.get(name, _ABSENT) for name in names)

    def pattern(self) -> str:
        """`service=api environment=staging version=*`: what the grant covers, for listings and cards."""
        shown = [f"{name}={'*' if name in self.vary else self.args[name]}" for name in sorted(self.args)]
        shown += [f"{name}=*" for name in sorted(self.vary) if name not in self.args]
        return " ".join(shown) or "(no arguments)"


_ABSENT = object()


def asked_grant(comment: str) -> tuple[int | None, str] | None:
    """The grant a decision's comment asks for: (seconds, or None for the policy's longest; the rest of the
    comment), or None when it asks for none. `grant 4h looks fine` -> (14400, "looks fine")."""
    found = GRANT_WORDS.match(comment)
    if found is None:
        return None
    duration, rest = found.groups()
    try:
        length = seconds(duration) if duration else None
    except ValueError:  # `grant 4x`: not a duration; the words stay the comment, the grant is the longest
        length, rest = None, f"{duration} {rest}".strip()
    return length, rest.strip()


def fits(when_: Mapping[str, list[Any]], args: Mapping[str, Any]) -> bool:
    """Whether `args` have, for each argument `when_` names, one of its values."""
    return all(args.get(name) in values for name, values in when_.items())
