"""Process wiring: the composition root (`bot.main`), the embedded Redis, and the `bot` command line
(`bot.cli:main`). Nothing is re-exported here: `bot.main` is the composition root's module, so a
`main` function beside it would be shadowed by it once imported."""

__all__: list[str] = []
