"""Redis key names and TTLs, in one place.

Keys that one Lua script touches together share a hash tag, so they land in one Redis
Cluster slot: a thread's keys share `{<thread id>}`; approvals and their deadline sets share
`{approvals}`; dedup keys share the slot of `inbox` (`{inbox}`), which they are enqueued with.
"""

from __future__ import annotations

INBOX = "inbox"
WORKERS_GROUP = "workers"
THREAD_INDEX = "threads"  # sorted set: thread id -> created at (epoch seconds)
APPROVAL_INDEX = "{approvals}:pending"  # sorted set: approval id -> expires at
APPROVAL_REMINDERS = "{approvals}:remind"  # sorted set: approval id -> when to remind approvers
APPROVAL_ESCALATIONS = "{approvals}:escalate"  # sorted set: approval id -> when to ask the second group
APPROVAL_SCHEDULES = (APPROVAL_INDEX, APPROVAL_REMINDERS, APPROVAL_ESCALATIONS)

DEDUP_TTL_SECONDS = 24 * 3600
LOCK_TTL_MS = 30_000  # renewed while a worker holds it; a dead worker's lease lapses after this
LOCK_WAIT_SECONDS = 30
CLAIM_IDLE_MS = 60_000  # an inbox entry unacknowledged this long is taken over by another worker
MAX_DELIVERIES = 5  # a trigger taken over this many times goes to the dead-letter stream
INBOX_MAXLEN = 100_000
OUTBOX_MAXLEN = 10_000


def thread_log(thread_id: str) -> str:
    return f"thread:{{{thread_id}}}:log"


def thread_meta(thread_id: str) -> str:
    return f"thread:{{{thread_id}}}:meta"


def thread_lock(thread_id: str) -> str:
    return f"thread:{{{thread_id}}}:lock"


def approval(approval_id: str) -> str:
    return f"{{approvals}}:approval:{approval_id}"


def dedup(key: str) -> str:
    return f"dedup:{{{INBOX}}}:{key}"


def outbox(channel: str) -> str:
    return f"outbox:{channel}"
