"""`bot check-config` names what would fail at run time, before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.check import check_config
from tests.conftest import test_settings as settings_for

TOOLS = """
[groups]
oncall = ["cli:operator"]
[tools.gone]
description = "A script that is not there."
executor = { kind = "command", argv = ["{python}", "scripts/not-there.py", "{requester}"] }
[tools.unknown]
description = "A program that is not installed."
executor = { kind = "command", argv = ["no-such-program-opsbot", "status"] }
[tools.fine]
description = "A program on PATH."
executor = { kind = "command", argv = ["echo", "ok"] }
"""


async def test_a_missing_script_or_program_is_reported_with_the_fix(
    tmp_path, embedded_redis, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools.toml"
    tools.write_text(TOOLS)
    settings = settings_for(tmp_path, BOT_TOOLS_FILE=str(tools), REDIS_URL=embedded_redis)
    code = await check_config(settings, {"PATH": "/usr/bin:/bin"})
    printed = capsys.readouterr().out.splitlines()
    assert code == 1
    errors = [line for line in printed if line.startswith("ERR")]
    assert any("tool 'gone' runs scripts/not-there.py, which is not in" in line for line in errors), printed
    assert any("tool 'unknown' runs 'no-such-program-opsbot', which is not on PATH" in line for line in errors)
    assert not any("'fine'" in line for line in errors)


async def test_the_shipped_tools_all_start(tmp_path, embedded_redis, capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(tmp_path, REDIS_URL=embedded_redis)
    await check_config(settings, {"PATH": "/usr/bin:/bin"})
    assert "ok  command tools: every program and script found" in capsys.readouterr().out


async def test_the_shipped_config_checks_clean_and_changes_nothing(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No REDIS_URL: the embedded server is looked for, not started; nothing appears in the folder or data dir."""
    monkeypatch.chdir(tmp_path)
    settings = settings_for(tmp_path)
    code = await check_config(settings, {"PATH": "/usr/bin:/bin"})
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "ok  redis: embedded (redis-server " in printed
    assert f"ok  data: {tmp_path / 'data'} (created on start)" in printed
    assert list(tmp_path.iterdir()) == []


def test_a_package_shadowed_by_another_projects_is_named(tmp_path) -> None:
    (tmp_path / "shadow" / "evals").mkdir(parents=True)
    (tmp_path / "shadow" / "evals" / "__init__.py").write_text("")  # e.g. another project's `evals`
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_")} | {"PYTHONPATH": str(tmp_path / "shadow")}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check-config"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env | {"BOT_DATA_DIR": str(tmp_path / "data")},
        timeout=60,
    )
    assert done.returncode == 1
    assert f"ERR packages: evals ({tmp_path / 'shadow'}) not beside bot in " in done.stdout, done.stdout
    assert "another project's package shadows it; install opsbot in an environment of its own" in done.stdout
