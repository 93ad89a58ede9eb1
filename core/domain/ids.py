"""Identifiers: sortable event ids, short approval ids, stable thread ids."""

from __future__ import annotations

import hashlib
import os
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # ten bits at a time: half the divisions


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length // 2):
        value, rem = divmod(value, 1024)
        chars.append(_PAIRS[rem])
    if length % 2:
        chars.append(_CROCKFORD[value % 32])
    return "".join(reversed(chars))


def new_id() -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    return _b32(time.time_ns() // 1_000_000, 10) + _b32(int.from_bytes(os.urandom(10), "big"), 16)


def new_approval_id() -> str:
    """Eight characters, easy to type in `approve <id>`; 40 random bits."""
    return _b32(int.from_bytes(os.urandom(5), "big"), 8)


def thread_id_for(channel: str, conversation: str) -> str:
    """The same channel conversation always maps to the same thread, so retries land together."""
    digest = hashlib.sha256(f"{channel}\x00{conversation}".encode()).digest()
    return "t" + _b32(int.from_bytes(digest[:10], "big"), 16)
