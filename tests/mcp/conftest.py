"""The email tests' Dovecot (skipped, saying how to install it, where it is missing) and SMTP sink,
for the MCP requests answered by email."""

from tests.email.conftest import dovecot, smtp

__all__ = ["dovecot", "smtp"]
