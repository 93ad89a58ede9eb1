"""Durations in configuration: whole seconds, or a short text such as "90s", "5m", "1h30m", "2d"."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # in the order TEXT reads them
TEXT = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def seconds(value: Any) -> Any:
    """`"1h30m"` -> 5400; an int stays itself; anything else is left for pydantic to refuse."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    if text.isdigit():
        return int(text)
    found = TEXT.fullmatch(text)
    if not text or found is None:
        raise ValueError(f"{value!r} is not a duration; write seconds, or e.g. '90s', '5m', '1h30m', '2d'")
    return sum(int(part) * unit for part, unit in zip(found.groups(), UNITS.values(), strict=True) if part)


Seconds = Annotated[int, BeforeValidator(seconds)]


def words(total: int) -> str:
    """5400 -> "1h30m": how a card or a refusal names a policy's duration."""
    parts = []
    for unit, size in UNITS.items():
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"
