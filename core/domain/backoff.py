"""How long a retry loop waits before its next attempt: exponential, capped, jittered, reset on success.

Every retry loop of the bot (the worker's take loop and its acks, the durable commit, the lease
renewal, the outbox renderer, the IMAP reconnect) asks its own `Backoff` for the next pause and
resets it once an attempt works:

    pauses = Backoff(first=0.5, cap=30.0)
    while True:
        try:
            work()
            pauses.reset()
        except TransientError:
            await asyncio.sleep(pauses.next())

The n-th pause in a row is drawn from `[(1 - jitter) * c, c]` where `c = min(cap, first * 2**n)`.
`jitter=1` is "full jitter" (anything from 0 up to `c`); the default, one half, keeps a floor, so
a pause still grows from one failure to the next (logs read "waiting longer") while processes that
failed together, say every worker when Redis restarts, do not all retry at the same moment.
"""

from __future__ import annotations

import random

# Shared by every Backoff not given its own: one seeded generator per process, not one per loop.
_RANDOM = random.Random()


class Backoff:
    """The pauses of one retry loop; pass `rng=random.Random(seed)` for the same pauses every time."""

    def __init__(
        self, first: float = 0.5, cap: float = 30.0, jitter: float = 0.5, rng: random.Random | None = None
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"Backoff(first={first}, cap={cap}): need 0 < first <= cap")
        if not 0 <= jitter <= 1:
            raise ValueError(f"Backoff(jitter={jitter}): need a share between 0 (none) and 1 (full jitter)")
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self.rng = rng or _RANDOM
        self.failures = 0  # pauses handed out since the last reset

    def ceiling(self) -> float:
        """The longest the next pause can be."""
        # The exponent stops growing once past the cap: 2.0 ** 1100 would overflow a float.
        return min(self.cap, self.first * 2.0 ** min(self.failures, 64))

    def next(self) -> float:
        """Seconds to wait before the next attempt; each call counts one more failure."""
        pause = self.ceiling() * (1 - self.jitter * self.rng.random())
        self.failures += 1
        return pause

    def reset(self) -> None:
        """An attempt worked: the next failure waits `first` again."""
        self.failures = 0
