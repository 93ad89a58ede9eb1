"""The one backoff of every retry loop: doubling from `first`, capped, jittered below the ceiling, reset on success."""

from __future__ import annotations

import random

import pytest

from core import Backoff


def test_without_jitter_each_pause_doubles_up_to_the_cap() -> None:
    pauses = Backoff(first=0.5, cap=5.0, jitter=0)
    assert [pauses.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_takes_at_most_its_share_off_each_ceiling() -> None:
    pauses = Backoff(first=0.2, cap=10.0, rng=random.Random(7))
    for _ in range(200):
        ceiling = pauses.ceiling()
        assert ceiling / 2 <= pauses.next() <= ceiling
    assert pauses.ceiling() == 10.0


def test_full_jitter_spreads_pauses_from_zero_to_the_ceiling() -> None:
    pauses = Backoff(first=1.0, cap=1.0, jitter=1, rng=random.Random(3))
    drawn = [pauses.next() for _ in range(500)]
    assert all(0 <= pause <= 1.0 for pause in drawn)
    assert min(drawn) < 0.05 and max(drawn) > 0.95, "the whole range is used"


def test_a_seeded_generator_gives_the_same_pauses() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next() for _ in range(10)] == [second.next() for _ in range(10)]


def test_reset_starts_again_from_the_first_pause() -> None:
    pauses = Backoff(first=0.5, cap=30.0, jitter=0)
    for _ in range(5):
        pauses.next()
    pauses.reset()
    assert pauses.next() == 0.5


def test_a_long_outage_stays_at_the_cap() -> None:
    """A loop failing for days asks thousands of times; the exponent must not overflow."""
    pauses = Backoff(first=0.5, cap=30.0, jitter=0)
    for _ in range(5000):
        pause = pauses.next()
    assert pause == 30.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": 0}, "need 0 < first <= cap"),
        ({"first": 5, "cap": 1}, "need 0 < first <= cap"),
        ({"jitter": 1.5}, "between 0 \\(none\\) and 1"),
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
