"""Named failpoints: places in the real code paths where a test or an operator can make the process
die, fail or stall, to prove that nothing is lost or done twice at that gap.

    BOT_FAILPOINTS="after-commit=kill,before-render=sleep:500,after-tool=error"

Actions: `kill` (SIGKILL this process: no cleanup, no finally), `error` (raise `FailpointError`),
`sleep:MS` (stall, as a slow network or a paused process would). Unset, `hit` is one dict lookup.
The names are listed in `POINTS` and in docs/architecture.md; an unknown name is a config error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from core.domain.errors import ConfigError

log = logging.getLogger(__name__)

POINTS = {
    "after-commit": "a step's events and outbound messages are stored (on Redis Cluster: not yet relayed to the "
    "channels); nothing was rendered or acknowledged",
    "after-decision": "an approval decision is stored with its events; the approved tool has not started",
    "after-tool": "a tool finished; its result is not stored yet",
    "before-audit": "a commit with approval facts is stored; its audit records are not appended yet",
    "before-render": "a renderer took an outbound message; the platform was not called",
    "after-render": "the platform call was made; the renderer has not recorded it",
    "before-ack": "a trigger was handled; its inbox entry is not acknowledged yet",
}

_active: dict[str, str] = {}


class FailpointError(RuntimeError):
    """Raised by a failpoint set to `error`."""


def parse(spec: str) -> dict[str, str]:
    """`name=action,...` -> {name: action}; raises ConfigError naming what is wrong."""
    points: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        if name not in POINTS:
            raise ConfigError(f"BOT_FAILPOINTS names {name!r}, which is not a failpoint; known: {', '.join(POINTS)}")
        if action not in ("kill", "error") and not (action.startswith("sleep:") and action[6:].isdigit()):
            raise ConfigError(f"BOT_FAILPOINTS: {item!r} has action {action!r}; use kill, error or sleep:MS")
        points[name] = action
    return points


def configure(spec: str) -> None:
    """Arm the failpoints of `spec` (BOT_FAILPOINTS) for this process, replacing any armed before."""
    _active.clear()
    _active.update(parse(spec))
    if _active:
        log.warning("failpoints armed: %s", ", ".join(f"{k}={v}" for k, v in _active.items()))


@contextmanager
def armed(spec: str) -> Iterator[None]:
    """Arm failpoints for the duration of a block (in-process tests); disarms after."""
    configure(spec)
    try:
        yield
    finally:
        _active.clear()


async def hit(name: str) -> None:
    """Pass the failpoint `name`: free unless it is armed."""
    action = _active.get(name)
    if action is None:
        return
    log.warning("failpoint %s: %s", name, action)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "error":
        raise FailpointError(f"failpoint {name} is armed to fail (BOT_FAILPOINTS)")
    else:
        await asyncio.sleep(int(action[6:]) / 1000)
