"""`/stale_deploys`: which services run a different version in staging than in production.

A report for a schedule (a daily 09:00 message to a channel): one read-only tool call, the
rest is plain Python over its output, so it needs no model.
"""

from __future__ import annotations

import re

from core.model.llm import Choice
from core.runtime.workflows.engine import Progress

LINE = re.compile(r"^(?P<service>\S+)\s+staging=(?P<staging>\S+)\s+production=(?P<production>\S+)\s*$")


def report(listing: str) -> str:
    """The report for `deployctl list` output: the services whose two environments differ."""
    rows = [match for line in listing.splitlines() if (match := LINE.match(line.strip()))]
    if not rows:
        return f"stale deploys: cannot read the service list:\n{listing}"
    stale = [row for row in rows if row["staging"] != row["production"]]
    if not stale:
        return f"stale deploys: none; all {len(rows)} services run the same version in staging and production."
    lines = [f"- {row['service']}: staging {row['staging']}, production {row['production']}" for row in stale]
    head = f"stale deploys: {len(stale)} of {len(rows)} services differ between staging and production"
    return "\n".join([f"{head} (promote the release, or bring staging back):", *lines])


class StaleDeploys:
    def step(self, run: Progress) -> Choice:
        listing = run.outcome("list_services")
        if listing is None:
            return run.call("list_services", "read the versions live in each environment")
        if not listing.ok:
            return run.reply(f"stale deploys report failed: {listing.text}")
        return run.reply(report(listing.text))
