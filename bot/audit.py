"""`bot audit export` and `bot audit verify`: the approvals' audit trail (`core.redis.audit`) from the shell.

Light at import (the CLI parses `--since` with `since` before anything heavy is loaded).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.settings import Settings

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since(text: str, now: datetime | None = None) -> datetime:
    """`24h`, `30m`, `7d` (that long ago) or an ISO time (`2026-11-23T14:00:00Z`; no zone: UTC)."""
    if match := _DURATION.match(text.strip()):
        amount, unit = match.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r} is neither a duration (24h, 30m, 7d) nor an ISO time (2026-11-23T14:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def audit(settings: Settings, args: argparse.Namespace) -> int:
    from bot.main import running_wiring
    from core.redis.audit import AuditLog

    async with running_wiring(settings) as wiring:
        log = AuditLog(wiring.store)
        if args.action == "export":
            async for line in log.raw(args.since):
                sys.stdout.write(line + "\n")
            return 0
        result = await log.verify()
        if result.fault is None:
            print(f"{result.count} records, chain intact")
            return 0
        print(f"audit chain broken at {result.fault} ({result.count} records read)")
        return 1
