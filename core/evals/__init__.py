"""Evals: `bot eval`'s harness, its scenarios, and the live and recorded models it runs them on."""
