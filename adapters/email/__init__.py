"""The email channel: IMAP in, SMTP out, threading, approval tokens, sender checks."""
