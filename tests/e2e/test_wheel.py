"""The wheel is the whole product: built from this checkout, installed (not editable) into a fresh venv
and run from an empty folder, it checks its config, holds a chat approval session, runs its evals and
writes a copy to customise, and writes nothing outside that folder and BOT_DATA_DIR.

The fresh venv holds only the wheel; its dependencies are the test venv's, seen through a `.pth` line
(the test venv's own `.pth` files, its editable install among them, are not run that way), so the test
needs no network. `.ci/measure` installs the wheel with its dependencies from the registry, cold.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.chat_driver import DEPLOYED, REPO_ROOT, BotProcesses, approve, on_call, request_deploy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# What the wheel is built from: the project's metadata and its packages (not tests/, bench/, docs/).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bot", "adapters", "core", "config", "prompts", "evals")
COMMAND_SECONDS = 120.0


@dataclass(frozen=True)
class Installed:
    venv: Path
    site: Path
    wheel: Path

    @property
    def bot(self) -> Path:
        return self.venv / "bin" / "bot"

    def files(self) -> set[str]:
        """Every file of the venv, to show that running the bot wrote nothing there."""
        return {str(path.relative_to(self.venv)) for path in self.venv.rglob("*") if path.is_file()}


def _run(argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=COMMAND_SECONDS, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, (
        f"{' '.join(map(str, argv))} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building in the checkout would leave build/ and *.egg-info there
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(REPO_ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(root / "dist"), str(source)]
    )
    (wheel,) = (root / "dist").glob("opsbot-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    _run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "--quiet", str(wheel)])
    site = Path(
        _run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test-dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(borrowed)))
    return Installed(venv, site, wheel)


@dataclass(frozen=True)
class Place:
    """An empty folder to run the bot from, its BOT_DATA_DIR and HOME, and the environment for both."""

    work: Path
    data: Path
    home: Path
    env: dict[str, str]


@pytest.fixture
def place(tmp_path: Path, installed: Installed) -> Iterator[Place]:
    work, data, home = tmp_path / "work", tmp_path / "data", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "PYTHON", "VIRTUAL_ENV"))}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("REDIS_URL", None)
    env |= {
        "PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "BOT_DATA_DIR": str(data),
        "PYTHONDONTWRITEBYTECODE": "1",  # the venv's files stay as installed, so any change is the bot's
    }
    before = installed.files()
    yield Place(work, data, home, env)
    assert installed.files() == before, "the bot wrote into its venv"
    assert list(home.iterdir()) == [], "the bot wrote into HOME"


def test_it_runs_from_the_installed_packages_not_the_checkout(installed: Installed, place: Place) -> None:
    probe = "import bot, config, core, prompts, evals; print('\\n'.join(m.__file__ for m in (bot, config, core, prompts, evals)))"
    files = _run([str(installed.venv / "bin" / "python"), "-c", probe], cwd=place.work, env=place.env).stdout.split()
    assert all(Path(file).is_relative_to(installed.site) for file in files), files
    version = installed.wheel.name.split("-")[1]
    for command in ("bot", "opsbot"):
        shown = _run([str(installed.venv / "bin" / command), "--version"], cwd=place.work, env=place.env).stdout
        assert shown.strip() == f"opsbot {version}"


def test_check_config_passes_and_changes_nothing(installed: Installed, place: Place) -> None:
    out = _run([str(installed.bot), "check-config"], cwd=place.work, env=place.env).stdout
    assert not any(line.startswith("ERR") for line in out.splitlines()), out
    assert f"prompts from {installed.site / 'prompts'}" in out
    assert "command tools: every program and script found" in out
    assert list(place.work.iterdir()) == [] and not place.data.exists(), "check-config wrote files"


def test_a_missing_tool_script_is_flagged(installed: Installed, place: Place) -> None:
    tools = place.work.parent / "tools.toml"
    tools.write_text(
        '[tools.gone]\ndescription = "gone"\nexecutor = { kind = "command", argv = ["{python}", "gone.py"] }\n'
    )
    done = subprocess.run(
        [str(installed.bot), "check-config"],
        check=False,
        cwd=place.work,
        env=place.env | {"BOT_TOOLS_FILE": str(tools)},
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
    )
    assert done.returncode == 1
    assert f"ERR tool 'gone' runs gone.py, which is not in {place.work}" in done.stdout


@pytest.fixture
async def bots(installed: Installed, place: Place) -> AsyncIterator[BotProcesses]:
    processes = BotProcesses(place.data, command=[str(installed.bot)], cwd=place.work, env=place.env)
    try:
        yield processes
    finally:
        await processes.close()


async def test_a_chat_approval_session_deploys(bots: BotProcesses, place: Place) -> None:
    chat = await bots.chat()
    approval_id = await request_deploy(chat)
    dana = await on_call(bots)
    await approve(chat, approval_id, by=dana)
    transcript = await chat.quit()
    await dana.quit()

    assert sum(1 for line in transcript if re.search(DEPLOYED, line)) == 1
    deploys = [
        e for e in json.loads((place.data / "deployments.json").read_text())["history"] if e["action"] == "deploy"
    ]
    assert [(d["service"], d["version"], d["by"]) for d in deploys] == [("api", "1.4.2", "cli:operator")]
    assert list(place.work.iterdir()) == [], "the session wrote into the working folder, not BOT_DATA_DIR"


def test_eval_runs_offline_on_the_recorded_answers(installed: Installed, place: Place) -> None:
    out = _run([str(installed.bot), "eval"], cwd=place.work, env=place.env).stdout
    assert "approval gate:" in out and "0 would have run without one" in out, out
    record = subprocess.run(
        [str(installed.bot), "eval", "--record"],
        check=False,
        cwd=place.work,
        capture_output=True,
        env=place.env | {"ANTHROPIC_API_KEY": "test"},
        text=True,
        timeout=COMMAND_SECONDS,
    )
    assert record.returncode == 2 and "these are the ones installed with the bot: run `bot init DIR`" in record.stderr
    assert list(place.work.iterdir()) == []


def test_init_writes_a_copy_the_bot_then_uses(installed: Installed, place: Place) -> None:
    out = _run([str(installed.bot), "init", "team"], cwd=place.work, env=place.env).stdout
    exports = dict(
        line.removeprefix("  export ").split("=", 1) for line in out.splitlines() if line.startswith("  export ")
    )
    assert set(exports) == {
        "BOT_TOOLS_FILE",
        "BOT_AGENTS_FILE",
        "BOT_SCHEDULES_FILE",
        "BOT_CALENDAR_FILE",
        "BOT_HOOKS_FILE",
        "BOT_PROMPTS_DIR",
        "BOT_EVALS_DIR",
    }
    assert all(Path(path).is_relative_to(place.work / "team") for path in exports.values())
    prompt = Path(exports["BOT_PROMPTS_DIR"]) / "deploybot.md"
    prompt.write_text(prompt.read_text() + "\nAlways name the on-call channel.\n")  # the team's own edit
    checked = _run([str(installed.bot), "check-config"], cwd=place.work, env=place.env | exports).stdout
    assert f"prompts from {exports['BOT_PROMPTS_DIR']}" in checked and "ERR" not in checked, checked
    again = subprocess.run(
        [str(installed.bot), "init", "team"],
        check=False,
        cwd=place.work,
        env=place.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
    )
    assert again.returncode == 2 and "already exist; nothing was written" in again.stderr
    assert "Always name the on-call channel." in prompt.read_text()
    assert sorted(p.name for p in place.work.iterdir()) == ["team"]
