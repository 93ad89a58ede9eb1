#!/usr/bin/env python3
"""deployctl: a simulated deployment system that records its state in one JSON file.

The bot's tools run this as argv (`python -I -m config.deploybot.deployctl ...`, never through a
shell). State lives at $DEPLOYCTL_STATE, else $BOT_DATA_DIR/deployments.json (BOT_DATA_DIR defaults
to ./.bot). Every command that reads or writes state holds an exclusive flock on a sidecar ``.lock``
file and writes via temp file + os.replace, so concurrent invocations never lose an update. Errors go
to stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import sys
import tempfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVICES = ("api", "payments", "worker", "web")
ENVIRONMENTS = ("staging", "production")
SEED_VERSION = "1.0.0"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
ID_PREFIX = {"deploy": "d", "rollback": "rb", "restart": "rs"}

State = dict[str, Any]
Entry = dict[str, str]


class UsageError(Exception):
    """A bad argument or state; the message says what, the offending value and the fix."""


def state_path() -> Path:
    if explicit := os.environ.get("DEPLOYCTL_STATE"):
        return Path(explicit)
    return Path(os.environ.get("BOT_DATA_DIR") or ".bot") / "deployments.json"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load(path: Path) -> State:
    state: State = {"services": {}, "history": []}
    if path.exists():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"state file {path} is unreadable ({exc}); fix or delete it to reseed") from exc
    for service in SERVICES:  # seed on first use, and any service missing from an older file
        envs = state["services"].setdefault(service, {})
        for env in ENVIRONMENTS:
            envs.setdefault(env, {"version": SEED_VERSION, "at": now(), "by": "seed"})
    return state


def _save(path: Path, state: State) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked_state(path: Path) -> Iterator[State]:
    """Yield the state under an exclusive lock; save it afterwards if the body changed it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existed = path.exists()
        state = _load(path)
        before = json.dumps(state, sort_keys=True)
        yield state
        if not existed or json.dumps(state, sort_keys=True) != before:
            _save(path, state)


def check_service(service: str) -> str:
    if service not in SERVICES:
        raise UsageError(f"unknown service {service!r}; use one of: {', '.join(SERVICES)}")
    return service


def check_environment(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise UsageError(f"unknown environment {env!r}; use one of: {', '.join(ENVIRONMENTS)}")
    return env


def format_entry(e: Entry) -> str:
    change = e["version"] if e["action"] == "restart" else f"{e['previous']} -> {e['version']}"
    return f"{e['at']}  {e['id']}  {e['action']:<8}  {e['service']}  {e['environment']}  {change}  by {e['by']}"


def _version_stack(state: State, service: str, env: str) -> list[str]:
    """Versions live so far, oldest first: deploys push, rollbacks pop."""
    stack: list[str] = []
    for e in state["history"]:
        if e["service"] != service or e["environment"] != env or e["action"] == "restart":
            continue
        if not stack:
            stack.append(e["previous"])
        if e["action"] == "deploy":
            stack.append(e["version"])
        else:
            stack.pop()
    return stack or [state["services"][service][env]["version"]]


def _record(state: State, action: str, service: str, env: str, version: str, by: str) -> Entry:
    live = state["services"][service][env]
    taken = {e["id"] for e in state["history"]}
    entry_id = f"{ID_PREFIX[action]}-{secrets.token_hex(3)}"
    while entry_id in taken:
        entry_id = f"{ID_PREFIX[action]}-{secrets.token_hex(3)}"
    entry: Entry = {
        "action": action,
        "service": service,
        "environment": env,
        "version": version,
        "previous": live["version"],
        "at": now(),
        "by": by,
        "id": entry_id,
    }
    state["history"].append(entry)
    state["services"][service][env] = {"version": version, "at": entry["at"], "by": by}
    return entry


def cmd_list(state: State, args: argparse.Namespace) -> str:
    return "\n".join(
        f"{name}  " + "  ".join(f"{env}={envs[env]['version']}" for env in ENVIRONMENTS)
        for name, envs in sorted(state["services"].items())
    )


def cmd_status(state: State, args: argparse.Namespace) -> str:
    service, env = check_service(args.service), check_environment(args.environment)
    live = state["services"][service][env]
    recent = [e for e in state["history"] if e["service"] == service and e["environment"] == env][-3:]
    lines = [f"{service} in {env}: {live['version']}", f"deployed at {live['at']} by {live['by']}"]
    lines.append("recent:" if recent else "recent: none")
    lines += [f"  {format_entry(e)}" for e in reversed(recent)]
    return "\n".join(lines)


def cmd_deploy(state: State, args: argparse.Namespace) -> str:
    service, env = check_service(args.service), check_environment(args.environment)
    if not VERSION_RE.match(args.version):
        raise UsageError(f"invalid version {args.version!r}; use semantic versioning like 1.4.2 or 1.4.2-rc.1")
    if state["services"][service][env]["version"] == args.version:
        return f"{service} {args.version} is already live in {env}; nothing to do"
    e = _record(state, "deploy", service, env, args.version, args.by)
    return f"deployed {service} {e['version']} to {env} (was {e['previous']}), deployment {e['id']}"


def open_incidents(state: State, service: str, env: str) -> list[dict[str, str]]:
    """Incidents recorded under "incidents" in the state file, still open, for the service (in any
    environment, or in `env`). Each: {"id", "service", "environment" (optional), "title", "opened_at", "status"}."""
    return [
        i
        for i in state.get("incidents", [])
        if i.get("status", "open") == "open" and i.get("service") == service and i.get("environment", env) == env
    ]


def cmd_plan(state: State, args: argparse.Namespace) -> str:
    """`deploy --dry-run`: what the deploy would change, and what to know before approving it; writes nothing."""
    service, env = check_service(args.service), check_environment(args.environment)
    if not VERSION_RE.match(args.version):
        raise UsageError(f"invalid version {args.version!r}; use semantic versioning like 1.4.2 or 1.4.2-rc.1")
    live = state["services"][service][env]
    lines = [f"plan: deploy {service} {args.version} to {env}"]
    if live["version"] == args.version:
        lines.append(f"  version: {live['version']} is already live; the deploy would change nothing")
    else:
        lines.append(f"  version: {live['version']} -> {args.version}")
    here = [e for e in state["history"] if e["service"] == service and e["environment"] == env]
    deploys = [e for e in here if e["action"] == "deploy"]
    if deploys:
        last = deploys[-1]
        lines.append(
            f"  last deploy: {last['previous']} -> {last['version']} at {last['at']} by {last['by']} ({last['id']})"
        )
    else:
        lines.append("  last deploy: none recorded")
    if here and here[-1]["action"] != "deploy":  # a rollback or restart since
        lines.append(f"  since then: {format_entry(here[-1])}")
    incidents = open_incidents(state, service, env)
    lines.append(f"  open incidents: {len(incidents)}" if incidents else "  open incidents: none")
    lines += [f"    {i.get('id', '?')}  {i.get('title', '')}  (opened {i.get('opened_at', '?')})" for i in incidents]
    return "\n".join(lines)


def cmd_rollback(state: State, args: argparse.Namespace) -> str:
    service, env = check_service(args.service), check_environment(args.environment)
    stack = _version_stack(state, service, env)
    if len(stack) < 2:
        raise UsageError(
            f"cannot roll back {service} in {env}: no earlier version in history (live is {stack[-1]}); "
            f"deploy the version you want instead"
        )
    e = _record(state, "rollback", service, env, stack[-2], args.by)
    return f"rolled back {service} in {env} from {e['previous']} to {e['version']}, deployment {e['id']}"


def cmd_restart(state: State, args: argparse.Namespace) -> str:
    service, env = check_service(args.service), check_environment(args.environment)
    live = state["services"][service][env]["version"]
    e = _record(state, "restart", service, env, live, args.by)
    return f"restarted {service} {live} in {env}, restart {e['id']}"


def cmd_history(state: State, args: argparse.Namespace) -> str:
    if args.limit < 1:
        raise UsageError(f"invalid --limit {args.limit}; use a positive integer")
    entries = state["history"]
    if args.service is not None:
        entries = [e for e in entries if e["service"] == check_service(args.service)]
    return "\n".join(format_entry(e) for e in reversed(entries[-args.limit :])) or "no history"


def run_tests(service: str) -> tuple[int, str]:
    """Simulate a test suite: the count is a stable function of the name; failures come from the env."""
    total = 20 + zlib.crc32(service.encode()) % 180
    failing = {s.strip() for s in os.environ.get("DEPLOYCTL_FAIL_TESTS", "").split(",")}
    if service not in failing:
        return 0, f"ran {total} tests for {service}: all passed"
    return 1, (
        f"FAILED tests/test_{service}.py::test_smoke - AssertionError: {service} health check returned 500\n"
        f"ran {total} tests for {service}: 1 failed, {total - 1} passed"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deployctl", description="Simulated deployments, recorded in JSON.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, positionals, help_text in [
        ("list", [], "versions live per service and environment"),
        ("status", ["service", "environment"], "live version and recent history"),
        ("deploy", ["service", "version", "environment"], "deploy a version"),
        ("rollback", ["service", "environment"], "go back to the version before the live one"),
        ("restart", ["service", "environment"], "restart the live version"),
        ("test", ["service"], "run the service's test suite"),
    ]:
        p = sub.add_parser(name, help=help_text)
        for positional in positionals:
            p.add_argument(positional)
        if name in ID_PREFIX:
            p.add_argument("--by", default="unknown", help="identity recorded in history")
        if name == "deploy":
            p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p = sub.add_parser("history", help="recent entries, newest first")
    p.add_argument("service", nargs="?")
    p.add_argument("--limit", type=int, default=10)
    return parser


COMMANDS = {
    "list": cmd_list,
    "status": cmd_status,
    "deploy": cmd_deploy,
    "rollback": cmd_rollback,
    "restart": cmd_restart,
    "history": cmd_history,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "test":
            code, output = run_tests(check_service(args.service))
            print(output)
            return code
        if getattr(args, "dry_run", False):  # read only: writes replace the file whole, so no lock is needed
            print(cmd_plan(_load(state_path()), args))
            return 0
        with locked_state(state_path()) as state:
            print(COMMANDS[args.command](state, args))
    except UsageError as exc:
        print(f"deployctl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deployctl: error: cannot use state file {state_path()}: {exc}; set DEPLOYCTL_STATE", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
