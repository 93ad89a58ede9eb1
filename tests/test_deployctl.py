"""config/deploybot/deployctl.py, driven as a real subprocess (as the tools run it) against a state file in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAM = ["-I", "-m", "config.deploybot.deployctl"]  # as config/tools.toml runs it

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "deployments.json"


@pytest.fixture
def env(state_file: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYCTL_")}
    return environ | {"DEPLOYCTL_STATE": str(state_file)}


@pytest.fixture
def run(env: dict[str, str], tmp_path: Path) -> Run:
    def _run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *PROGRAM, *args],
            cwd=tmp_path,
            env=env | (extra_env or {}),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    return _run


def test_list_shows_seeded_services(run: Run, state_file: Path) -> None:
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{service}  staging=1.0.0  production=1.0.0" for service in ["api", "payments", "web", "worker"]
    ]
    assert state_file.exists()


def test_deploy_records_entry_and_status_shows_it(run: Run, state_file: Path) -> None:
    deployed = run("deploy", "api", "1.4.2", "production", "--by", "alice")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.startswith("deployed api 1.4.2 to production (was 1.0.0), deployment d-")

    status = run("status", "api", "production")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == "api in production: 1.4.2"
    assert "by alice" in status.stdout.splitlines()[1]
    assert "1.0.0 -> 1.4.2  by alice" in status.stdout

    (entry,) = json.loads(state_file.read_text())["history"]
    assert {k: entry[k] for k in ("action", "service", "environment", "version", "previous", "by")} == {
        "action": "deploy",
        "service": "api",
        "environment": "production",
        "version": "1.4.2",
        "previous": "1.0.0",
        "by": "alice",
    }
    assert deployed.stdout.strip().endswith(entry["id"])
    assert "staging=1.0.0  production=1.4.2" in run("list").stdout


def test_deploying_live_version_is_a_noop(run: Run, state_file: Path) -> None:
    run("deploy", "web", "2.0.0", "staging")
    again = run("deploy", "web", "2.0.0", "staging")
    assert again.returncode == 0
    assert again.stdout.strip() == "web 2.0.0 is already live in staging; nothing to do"
    assert len(json.loads(state_file.read_text())["history"]) == 1


def test_rollback_returns_to_previous_version(run: Run, state_file: Path) -> None:
    run("deploy", "payments", "1.1.0", "production")
    run("deploy", "payments", "1.2.0", "production")
    run("restart", "payments", "production", "--by", "bob")

    first = run("rollback", "payments", "production", "--by", "carol")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("rolled back payments in production from 1.2.0 to 1.1.0, deployment rb-")
    second = run("rollback", "payments", "production")
    assert second.stdout.startswith("rolled back payments in production from 1.1.0 to 1.0.0")

    assert "payments  staging=1.0.0  production=1.0.0" in run("list").stdout
    actions = [e["action"] for e in json.loads(state_file.read_text())["history"]]
    assert actions == ["deploy", "deploy", "restart", "rollback", "rollback"]


def test_rollback_without_history_fails(run: Run) -> None:
    result = run("rollback", "worker", "staging")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "cannot roll back worker in staging: no earlier version" in result.stderr


def test_restart_records_entry(run: Run) -> None:
    result = run("restart", "worker", "production", "--by", "dave")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("restarted worker 1.0.0 in production, restart rs-")
    assert "restart   worker  production  1.0.0  by dave" in run("history", "worker").stdout


def test_history_filters_by_service_and_limits(run: Run) -> None:
    for version in ("1.1.0", "1.2.0", "1.3.0"):
        run("deploy", "api", version, "staging")
    run("deploy", "web", "3.0.0", "staging")

    lines = run("history", "api", "--limit", "2").stdout.splitlines()
    assert len(lines) == 2
    assert "1.2.0 -> 1.3.0" in lines[0]
    assert "1.1.0 -> 1.2.0" in lines[1]
    assert run("history", "payments").stdout.strip() == "no history"


@pytest.mark.parametrize(
    ("args", "named", "allowed"),
    [
        (["deploy", "api", "1.4", "production"], "'1.4'", "1.4.2"),
        (["deploy", "api", "v1.4.2", "production"], "'v1.4.2'", "1.4.2"),
        (["deploy", "billing", "1.4.2", "production"], "'billing'", "api, payments, worker, web"),
        (["deploy", "api", "1.4.2", "prod"], "'prod'", "staging, production"),
        (["status", "api", "qa"], "'qa'", "staging, production"),
        (["rollback", "nope", "staging"], "'nope'", "api, payments, worker, web"),
        (["test", "billing"], "'billing'", "api, payments, worker, web"),
        (["history", "--limit", "0"], "0", "positive integer"),
    ],
)
def test_invalid_argument_exits_2_naming_value(
    run: Run, state_file: Path, args: list[str], named: str, allowed: str
) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert named in result.stderr
    assert allowed in result.stderr
    if state_file.exists():
        assert json.loads(state_file.read_text())["history"] == []


def test_test_subcommand_passes_deterministically(run: Run) -> None:
    first, second = run("test", "api"), run("test", "api")
    assert first.returncode == 0
    assert first.stdout == second.stdout
    assert first.stdout.startswith("ran ") and first.stdout.strip().endswith(" tests for api: all passed")


def test_test_subcommand_fails_for_listed_service(run: Run) -> None:
    failing = run("test", "payments", extra_env={"DEPLOYCTL_FAIL_TESTS": "web, payments"})
    assert failing.returncode == 1
    assert "FAILED" in failing.stdout
    assert "tests for payments: 1 failed" in failing.stdout
    passing = run("test", "api", extra_env={"DEPLOYCTL_FAIL_TESTS": "web,payments"})
    assert passing.returncode == 0


def test_concurrent_deploys_lose_no_update(env: dict[str, str], state_file: Path, run: Run, tmp_path: Path) -> None:
    """Eight processes deploying at once each leave their entry and live version behind."""
    targets = [
        (service, f"2.{i}.0", environment)
        for i, (service, environment) in enumerate(
            (s, e) for s in ("api", "payments", "worker", "web") for e in ("staging", "production")
        )
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, *PROGRAM, "deploy", *target, "--by", "ci"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for target in targets
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr

    state = json.loads(state_file.read_text())
    assert len(state["history"]) == 8
    assert len({e["id"] for e in state["history"]}) == 8
    for service, version, environment in targets:
        assert state["services"][service][environment]["version"] == version


def test_deploy_dry_run_shows_the_plan_and_writes_nothing(run: Run, state_file: Path) -> None:
    """`deploy --dry-run` (the deploy tool's preview): current -> new version, the last deploy, open incidents."""
    assert run("deploy", "api", "1.4.2", "production", "--by", "alice").returncode == 0
    state = json.loads(state_file.read_text())
    state["incidents"] = [
        {"id": "INC-7", "service": "api", "environment": "production", "title": "5xx spike", "opened_at": "T1"},
        {"id": "INC-6", "service": "api", "title": "slow logins", "opened_at": "T0", "status": "resolved"},
        {"id": "INC-5", "service": "web", "title": "not this service", "opened_at": "T0"},
    ]
    state_file.write_text(json.dumps(state))
    before = state_file.read_text()

    plan = run("deploy", "api", "1.5.0", "production", "--by", "bob", "--dry-run")

    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[:2] == ["plan: deploy api 1.5.0 to production", "  version: 1.4.2 -> 1.5.0"]
    assert (
        lines[2].startswith("  last deploy: 1.0.0 -> 1.4.2 at ") and lines[2].endswith(")") and "by alice" in lines[2]
    )
    assert lines[3:] == ["  open incidents: 1", "    INC-7  5xx spike  (opened T1)"]
    assert state_file.read_text() == before, "a dry run writes nothing"


def test_deploy_dry_run_of_a_fresh_service_and_a_bad_version(run: Run, state_file: Path) -> None:
    plan = run("deploy", "web", "2.0.0", "staging", "--dry-run")
    assert plan.stdout.splitlines()[1:] == [
        "  version: 1.0.0 -> 2.0.0",
        "  last deploy: none recorded",
        "  open incidents: none",
    ]
    assert not state_file.exists(), "a dry run does not even seed the state file"
    bad = run("deploy", "web", "two", "staging", "--dry-run")
    assert bad.returncode == 2 and "invalid version 'two'" in bad.stderr
