"""Process wiring: the composition root, the embedded Redis, and the `bot` command line."""

from bot.cli import main

__all__ = ["main"]
