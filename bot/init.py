"""`bot init [DIR]`: an editable copy of the shipped config, prompts and evals, and how to point at it.

This is how a team starts customising: the copy is theirs (a repository, a config map), the installed
defaults stay untouched, and an upgrade never overwrites their edits. Nothing is overwritten without
`--force`; on a refusal nothing is written at all.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from config import resources
from core.domain.errors import ConfigError

# What each copied piece is, and the variable that points the bot at it.
VARIABLES = {
    "tools.toml": "BOT_TOOLS_FILE",
    "agents.toml": "BOT_AGENTS_FILE",
    "schedules.toml": "BOT_SCHEDULES_FILE",
    "calendar.toml": "BOT_CALENDAR_FILE",
    "hooks.toml": "BOT_HOOKS_FILE",
    "prompts": "BOT_PROMPTS_DIR",
    "evals": "BOT_EVALS_DIR",
}


def _sources() -> dict[Path, Path]:
    """Each shipped file, by where it goes relative to DIR (package code such as `__init__.py` is left out)."""
    config = resources.config_dir()
    files = {Path(name): config / name for name in resources.CONFIG_FILES}
    files |= {Path("prompts", p.name): p for p in sorted(resources.prompts_dir().glob("*.md"))}
    evals = resources.evals_dir()
    files |= {Path("evals", p.name): p for p in sorted(evals.glob("*.toml"))}
    files |= {Path("evals", "recorded", p.name): p for p in sorted((evals / "recorded").glob("*.json"))}
    return files


def init(directory: Path, *, force: bool) -> int:
    sources = _sources()
    existing = sorted(str(directory / target) for target in sources if (directory / target).exists())
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise ConfigError(f"{shown} already exist; nothing was written. Use --force to overwrite them")
    for target, source in sources.items():
        (directory / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, directory / target)
    root = directory.resolve()
    print(
        f"wrote {len(sources)} files to {root}: the tools, agents, schedules, calendar and hooks, the prompts and the evals."
    )
    print("Point the bot at them (in your shell profile, .env or the service's environment):")
    for name, variable in VARIABLES.items():
        print(f"  export {variable}={shlex.quote(str(root / name))}")
    print("Then edit them, and run `bot check-config` to see that the bot agrees.")
    return 0
