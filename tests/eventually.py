"""Waiting for a condition in a test: poll it until it holds or a deadline passes, never a fixed sleep.

    await eventually(lambda: fake.called("chat.update"), "the card to be edited")
    eventually_sync(lambda: not listening(port), "dovecot going away")  # outside an event loop

The check may be sync or async; its first truthy result is returned. At the deadline the test
fails with `AssertionError("<what> within <within>s ...")` and the last value the check gave, so
the failure says what was awaited and how far it got.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

DEADLINE_SECONDS = 20.0  # a bound for a loaded CI machine, not a timing: a passing test never waits it out
EVERY_SECONDS = 0.02  # between two looks; the condition, not this, ends the wait


def _missed(what: str, within: float, last: object) -> AssertionError:
    return AssertionError(f"{what} within {within:g}s (the last check gave {last!r})")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    what: str,
    within: float = DEADLINE_SECONDS,
    every: float = EVERY_SECONDS,
) -> T:
    """Poll `check` until it gives something truthy and return that; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result: object = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return cast(T, result)
        if time.monotonic() > deadline:
            raise _missed(what, within, result)
        await asyncio.sleep(every)


def eventually_sync(
    check: Callable[[], T], what: str, within: float = DEADLINE_SECONDS, every: float = EVERY_SECONDS
) -> T:
    """`eventually` for code outside an event loop (a sync fixture, a thread of `asyncio.to_thread`)."""
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise _missed(what, within, result)
        time.sleep(every)
    return result
