"""Quorum: which approvals of a request count, and whether they are enough.

A policy asks for `needed` distinct approvers, or (`groups`) one approver from each named group. An
approver in several groups fills whichever group leaves the others fillable: the counted votes are a
maximum matching of voters to groups, found by augmenting paths (a handful of people and groups, so
the simple algorithm is plenty). Pure: membership is a function passed in, and time is the votes' own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

Member = Callable[[str, str], bool]  # (identity, group name) -> is the identity in the group


class Vote(BaseModel):
    """One approver's approval of one request: who, when, from which channel, for which digest."""

    model_config = ConfigDict(frozen=True)

    by: str
    at: datetime
    channel: str = ""
    digest: str = ""


def assigned(votes: Sequence[Vote], groups: Sequence[str], member: Member) -> dict[str, str]:
    """Voter -> the group their vote fills, for as many groups as the votes can fill at once."""
    filled: dict[str, str] = {}  # group -> voter

    def place(voter: str, seen: set[str]) -> bool:
        for group in groups:
            if group in seen or not member(voter, group):
                continue
            seen.add(group)
            holder = filled.get(group)
            if holder is None or place(holder, seen):
                filled[group] = voter
                return True
        return False

    for vote in votes:
        place(vote.by, set())
    return {voter: group for group, voter in filled.items()}


def counted(votes: Sequence[Vote], groups: Sequence[str], member: Member) -> int:
    """How many of the votes count: every distinct voter, or with `groups`, the groups they fill."""
    if not groups:
        return len({vote.by for vote in votes})
    return len(assigned(votes, groups, member))


def adds(votes: Sequence[Vote], voter: str, groups: Sequence[str], member: Member) -> bool:
    """Whether `voter`'s approval would count towards the quorum (a new voter who fills a group still open)."""
    if any(vote.by == voter for vote in votes):
        return False
    new = Vote(by=voter, at=datetime.min)
    return counted([*votes, new], groups, member) > counted(votes, groups, member)


def open_groups(votes: Sequence[Vote], groups: Sequence[str], member: Member) -> list[str]:
    """The groups no counted vote fills yet, in the policy's order."""
    filled = set(assigned(votes, groups, member).values())
    return [group for group in groups if group not in filled]


def fresh(votes: Sequence[Vote], now: datetime, valid_for: int | None) -> list[Vote]:
    """The votes still valid at `now`: an approval not acted on within `valid_for` seconds lapses."""
    if valid_for is None:
        return list(votes)
    return [vote for vote in votes if now - vote.at < timedelta(seconds=valid_for)]
