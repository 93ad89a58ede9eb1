"""Quorum: which approvals of a request count, and whether they are enough.

A request has slots, each filled by one distinct approver: `needed` slots any approver fills, or one
slot per group of `from_groups`, plus one for the freeze override when it overrides a change freeze.
An approver who could fill several fills whichever leaves the others fillable: the counted votes are a
maximum matching of voters to slots, found by augmenting paths (a handful of people and slots, so the
simple algorithm is plenty). Pure: membership is a function passed in, and time is the votes' own.
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


def assigned(votes: Sequence[Vote], slots: Sequence[str], member: Member) -> dict[str, int]:
    """Voter -> the index of the slot their vote fills, for as many slots as the votes can fill at once.

    A slot is a group name, or any label `member` knows (the same label may fill several slots)."""
    filled: dict[int, str] = {}  # slot index -> voter

    def place(voter: str, seen: set[int]) -> bool:
        for index, slot in enumerate(slots):
            if index in seen or not member(voter, slot):
                continue
            seen.add(index)
            holder = filled.get(index)
            if holder is None or place(holder, seen):
                filled[index] = voter
                return True
        return False

    for vote in votes:
        place(vote.by, set())
    return {voter: index for index, voter in filled.items()}


def counted(votes: Sequence[Vote], slots: Sequence[str], member: Member) -> int:
    """How many of the votes count: the slots they fill."""
    return len(assigned(votes, slots, member))


def adds(votes: Sequence[Vote], voter: str, slots: Sequence[str], member: Member) -> bool:
    """Whether `voter`'s approval would count towards the quorum (a new voter who fills a slot still open)."""
    if any(vote.by == voter for vote in votes):
        return False
    new = Vote(by=voter, at=datetime.min)
    return counted([*votes, new], slots, member) > counted(votes, slots, member)


def open_slots(votes: Sequence[Vote], slots: Sequence[str], member: Member) -> list[str]:
    """The slots no counted vote fills yet, in the policy's order."""
    filled = set(assigned(votes, slots, member).values())
    return [slot for index, slot in enumerate(slots) if index not in filled]


def fresh(votes: Sequence[Vote], now: datetime, valid_for: int | None) -> list[Vote]:
    """The votes still valid at `now`: an approval not acted on within `valid_for` seconds lapses."""
    if valid_for is None:
        return list(votes)
    return [vote for vote in votes if now - vote.at < timedelta(seconds=valid_for)]
