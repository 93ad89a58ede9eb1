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
# sorted set: approval id -> when a snooze ends and the card is asked again; not one of the schedules a
# decision clears (its scripts take those three): the sweeper drops an entry whose approval has ended.
APPROVAL_SNOOZES = "{approvals}:snoozed"
APPROVALS_DECIDED = "{approvals}:decided"  # sorted set: approval id -> decided at, until its thread applied it
READY_PROBE = "readyz:probe"  # the short-lived key every /readyz writes: a Redis that cannot store is not ready


def approvals_ended(status: str) -> str:
    """Sorted set: approval id -> when it became `status` (approved, rejected, expired); for listings."""
    return f"{{approvals}}:{status}"


def approvals_requested_by(identity: str) -> str:
    """Sorted set: the approvals `identity` requested -> when (the API's `requester=` filter)."""
    return f"{{approvals}}:requester:{identity}"


def approvals_decided_by(identity: str) -> str:
    """Sorted set: the approvals `identity` approved or rejected -> when (the API's `decided_by=` filter)."""
    return f"{{approvals}}:decider:{identity}"


THREADS_UPDATED = "threads:updated"  # sorted set: thread id -> its last write (GET /v1/threads?order=updated)
ACTIVE_THREADS = "threads:active"  # sorted set: thread id -> last write, while work is in flight (status running)

DEDUP_TTL_SECONDS = 24 * 3600
LOCK_TTL_MS = 30_000  # renewed while a worker holds it; a dead worker's lease lapses after this
LOCK_WAIT_SECONDS = 30
CLAIM_IDLE_MS = 60_000  # an inbox entry unacknowledged this long is taken over by another worker
MAX_DELIVERIES = 5  # a trigger taken over this many times goes to the dead-letter stream
RENDERED_TTL_SECONDS = 7 * 24 * 3600  # how long a renderer remembers an outbound id it rendered
FOLLOW_RETENTION_SECONDS = 7 * 24 * 3600  # streams read by position (terminal, web, api) keep a week
BACKLOG_WARNING = 1_000  # a stream with more undelivered entries than this is logged as a backlog


def thread_log(thread_id: str) -> str:
    return f"thread:{{{thread_id}}}:log"


def thread_meta(thread_id: str) -> str:
    return f"thread:{{{thread_id}}}:meta"


def thread_lock(thread_id: str) -> str:
    return f"thread:{{{thread_id}}}:lock"


def thread_asking(thread_id: str) -> str:
    """The question a running MCP tool's server asks now (a hash), in the thread's slot next to its lease."""
    return f"thread:{{{thread_id}}}:asking"


def thread_answer(thread_id: str, ask_id: str) -> str:
    """The answer to question `ask_id` (a list the asking worker pops), in the thread's slot."""
    return f"thread:{{{thread_id}}}:answer:{ask_id}"


ASK_LINGER_SECONDS = 60  # an answer nobody popped, or a question nobody closed (a dead worker), is kept this long


def approval(approval_id: str) -> str:
    return f"{{approvals}}:approval:{approval_id}"


def dedup(key: str) -> str:
    return f"dedup:{{{INBOX}}}:{key}"


def thread_outbox(thread_id: str) -> str:
    """Redis Cluster only: a step's outbound messages, in the thread's slot, until relayed to `outbox(channel)`."""
    return f"thread:{{{thread_id}}}:outbox"


def outbox(channel: str) -> str:
    return f"outbox:{channel}"


def rendered(channel: str, outbound_id: str) -> str:
    """Set once a renderer of `channel` showed the outbound message (same slot as the channel's outbox)."""
    return f"rendered:{{{outbox(channel)}}}:{outbound_id}"


# --- the audit trail (`core/redis/audit.py`) --------------------------------------------------------------
# All in one slot, `{audit}`: the append script moves the chain head, a thread's cursor and the due set together.
AUDIT_LOG = "{audit}:log"  # stream: the hash-chained records, in chain order
AUDIT_HEAD = "{audit}:head"  # hash: `n` and `hash` of the chain's last record
AUDIT_DUE = "{audit}:due"  # sorted set: thread id -> when a commit with audit facts was announced (µs), until audited


def audit_cursor(thread_id: str) -> str:
    """Hash: how far the thread was audited (`seq`) and its open gated calls (`open`, JSON)."""
    return f"{{audit}}:cursor:{thread_id}"


def audit_records(thread_id: str) -> str:
    """List: the stream ids of the thread's records, in order (a thread's trail without a scan)."""
    return f"{{audit}}:records:{thread_id}"


# --- target locks (core/redis/locks.py) ------------------------------------------------------------------
# One gated call per target ("api/production"): a lease naming the thread and the call that hold it, and per
# thread the targets it holds. They share `{locks}`, so one script takes or releases them (one Cluster slot).
TARGET_LOCK_PREFIX = "{locks}:target:"
TARGET_LOCK_MARGIN_SECONDS = 300  # a lock outlives its approval's deadline plus the tool's timeout by this


def target_lock(target: str) -> str:
    """String: who holds `target` ("<thread id>\\t<call id>\\t<tool>\\t<since>"), with a TTL."""
    return f"{TARGET_LOCK_PREFIX}{target}"


def target_locks_held(thread_id: str) -> str:
    """Hash: target -> call id, the target locks `thread_id` holds."""
    return f"{{locks}}:thread:{thread_id}"


# --- standing grants (core/redis/grants.py) ----------------------------------------------------------------
# All in `{grants}`: one script stores a grant with its indexes, or revokes it (one Cluster slot).
GRANT_INDEX = "{grants}:all"  # sorted set: grant id -> expires at (epoch seconds), for listings
GRANT_RETENTION_SECONDS = 7 * 24 * 3600  # an expired or revoked grant is still shown by id this long


def grant(grant_id: str) -> str:
    """Hash: `data`, the grant's JSON (`core.domain.grants.Grant`)."""
    return f"{{grants}}:grant:{grant_id}"


def grants_for(tool: str, requester: str) -> str:
    """Hash: grant id -> JSON, the live grants for one tool and requester: a call's check is one HGETALL."""
    return f"{{grants}}:for:{tool}:{requester}"
