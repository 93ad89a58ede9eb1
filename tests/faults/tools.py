"""Python tools the fault suite's workers import (`tests.faults.tools:read`)."""

from __future__ import annotations


async def read(target: str) -> str:
    """Idempotent and instant: it only reports what it was asked to read."""
    return f"read {target}"
