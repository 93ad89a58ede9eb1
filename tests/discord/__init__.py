"""Discord channel tests.

discord.py imports the stdlib `audioop` (voice), deprecated since Python 3.11; with
`filterwarnings = error` that import would fail, so it is imported here once with that one
warning ignored.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401
