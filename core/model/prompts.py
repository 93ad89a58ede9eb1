"""Prompt templates are files (factor 2), rendered with explicit variables and nothing else."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

from core.domain.errors import ConfigError


@dataclass(frozen=True)
class RenderedPrompt:
    name: str
    text: str
    sha256: str


class PromptLibrary:
    """Loads `<name>.md` from one directory; `$variable` slots must all be given, and only those."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cache: dict[str, string.Template] = {}

    def template(self, name: str) -> string.Template:
        if name not in self._cache:
            path = self._directory / f"{name}.md"
            try:
                self._cache[name] = string.Template(path.read_text())
            except FileNotFoundError:
                raise ConfigError(f"prompt {name!r} not found at {path}; add the file or set BOT_PROMPTS_DIR") from None
        return self._cache[name]

    def render(self, name: str, **variables: str) -> RenderedPrompt:
        template = self.template(name)
        expected = set(template.get_identifiers())
        if missing := expected - variables.keys():
            raise ConfigError(f"prompt {name!r} needs variables {sorted(missing)}; pass them when rendering")
        if extra := variables.keys() - expected:
            raise ConfigError(f"prompt {name!r} has no slots for {sorted(extra)}; remove them or add $slots")
        text = template.substitute(variables)
        return RenderedPrompt(name=name, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())
