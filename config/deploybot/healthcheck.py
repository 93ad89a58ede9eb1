"""The `health` tool: a simulated health endpoint for the services `deployctl` manages.

Run as a program (`python -I -m config.deploybot.healthcheck api production`), not imported: it reads the
same deployment record as deployctl (``$DEPLOYCTL_STATE``, else ``$BOT_DATA_DIR/deployments.json``)
to find the version live in that environment, and answers healthy unless that service, or that
service at that version, is listed in ``$DEPLOYCTL_UNHEALTHY`` (``api`` or ``api@1.4.3``). So a bad
release is unhealthy until it is rolled back, the way the release workflow expects. Exit status
0 means healthy, 1 unhealthy, 2 a usage error.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

SERVICES = ("api", "payments", "worker", "web")
ENVIRONMENTS = ("staging", "production")
SEED_VERSION = "1.0.0"


def live_version(service: str, environment: str) -> str:
    explicit = os.environ.get("DEPLOYCTL_STATE")
    path = Path(explicit) if explicit else Path(os.environ.get("BOT_DATA_DIR") or ".bot") / "deployments.json"
    if not path.exists():
        return SEED_VERSION
    state = json.loads(path.read_text(encoding="utf-8"))
    return str(state.get("services", {}).get(service, {}).get(environment, {}).get("version", SEED_VERSION))


def check(service: str, environment: str) -> tuple[bool, str]:
    version = live_version(service, environment)
    unhealthy = {entry.strip() for entry in os.environ.get("DEPLOYCTL_UNHEALTHY", "").split(",") if entry.strip()}
    latency = 5 + zlib.crc32(f"{service}{environment}".encode()) % 40  # stable, so outputs can be compared
    if service in unhealthy or f"{service}@{version}" in unhealthy:
        return False, (
            f"{service} {version} in {environment} is unhealthy: GET /health -> 503 in {latency} ms "
            '(body: {"status": "failing", "error_rate": 0.31})'
        )
    return True, f"{service} {version} in {environment} is healthy: GET /health -> 200 in {latency} ms"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in SERVICES or argv[1] not in ENVIRONMENTS:
        print(f"usage: healthcheck.py {{{','.join(SERVICES)}}} {{{','.join(ENVIRONMENTS)}}}", file=sys.stderr)
        return 2
    try:
        healthy, text = check(argv[0], argv[1])
    except (OSError, ValueError) as exc:
        print(f"healthcheck: cannot read the deployment record: {exc}; set DEPLOYCTL_STATE", file=sys.stderr)
        return 2
    print(text)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
