"""`bot grants list` and `bot grants revoke <id>`: standing grants (`core.runtime.grants`) from the shell.

The shell is an operator's, beside the Redis: it lists every grant and may revoke any, recorded as
revoked by `cli:<user>`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from core.domain.errors import ApprovalError

if TYPE_CHECKING:
    from bot.main import Wiring
    from config.settings import Settings
    from core.domain.grants import Grant


def grant_line(grant: Grant, live: bool) -> str:
    state = "live" if live else (f"revoked by {grant.revoked_by}" if grant.revoked_at else "expired")
    return (
        f"{grant.grant_id}  {grant.tool} {grant.pattern()}  for {grant.requester}  granted by {grant.granted_by}  "
        f"until {grant.expires_at:%Y-%m-%d %H:%M} UTC  {state}"
    )


async def run_grants(wiring: Wiring, action: str, grant_id: str = "", identity: str = "cli:operator") -> int:
    grants = wiring.grants
    if action == "list":
        found = await grants.listed()
        now = wiring.threads.clock.now()
        for grant in found:
            print(grant_line(grant, grant.live(now)))
        if not found:
            print("no standing grants")
        return 0
    try:
        revoked = await grants.revoke(grant_id, identity, check=False)
    except ApprovalError as exc:
        print(f"error: {exc}")
        return 1
    print(f"grant {revoked.grant_id} revoked: {revoked.tool} {revoked.pattern()} for {revoked.requester}")
    return 0


async def grants(settings: Settings, args: argparse.Namespace) -> int:
    from bot.main import running_wiring

    async with running_wiring(settings) as wiring:
        return await run_grants(wiring, args.action, getattr(args, "id", ""), f"cli:{args.user or settings.cli_user}")
