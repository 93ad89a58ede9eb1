"""Who may touch what through the API: deterministic checks on data (`[access]` in the tools file).

- Everyone may read and steer (input, pause, resume) the threads they started, and read a thread
  whose pending approval they may decide.
- `[access].admins` (and the process owner, the terminal user whose `bot run` serves the console)
  may read and steer every thread and see every approval.
- `/metrics` needs `[access].metrics` or admins; the dead letters need admins.
- API threads render on `api`/`web`; another channel (a Slack thread, a Discord channel) needs the
  identity in `[access].speak.<channel>`, so a token cannot post into chat it was not given.
Every refusal is a 403 `forbidden` naming the permission that is missing.
"""

from __future__ import annotations

from bot.http.errors import ApiError
from core.domain.reducer import ThreadState
from core.redis.store import ApprovalRecord
from core.tools.registry import ToolRegistry

OWN_CHANNELS = ("api", "web")


class Access:
    def __init__(self, tools: ToolRegistry, owner: str) -> None:
        self.tools = tools
        self.owner = owner

    def admin(self, identity: str) -> bool:
        return identity == self.owner or self.tools.is_member(identity, self.tools.access.admins)

    def may_read(self, identity: str, state: ThreadState) -> bool:
        if state.requester == identity or self.admin(identity):
            return True
        pending = state.pending_approval
        return pending is not None and self.tools.may_approve(
            identity, pending.approvers, pending.requester, pending.allow_self
        )

    def may_see(self, identity: str, record: ApprovalRecord) -> bool:
        return (
            record.requester == identity
            or self.admin(identity)
            or self.tools.may_approve(identity, record.approvers, record.requester, record.allow_self)
        )

    def check_read(self, identity: str, state: ThreadState) -> None:
        if not self.may_read(identity, state):
            raise ApiError(
                403,
                "forbidden",
                f"{identity} may not read thread {state.thread_id}: it is {state.requester}'s, and reading others' "
                "threads needs [access].admins (or being an approver of its pending approval)",
            )

    def check_write(self, identity: str, state: ThreadState) -> None:
        if state.requester != identity and not self.admin(identity):
            raise ApiError(
                403,
                "forbidden",
                f"{identity} may not steer thread {state.thread_id}: it is {state.requester}'s, and steering others' "
                "threads (input, pause, resume) needs [access].admins. Nothing changed",
            )

    def check_speak(self, identity: str, channel: str) -> None:
        if channel in OWN_CHANNELS or self.admin(identity):
            return
        if not self.tools.is_member(identity, self.tools.access.speak.get(channel, [])):
            raise ApiError(
                403,
                "forbidden",
                f"{identity} may not start threads on channel {channel!r}: that needs [access].speak.{channel}; "
                f"use channel 'api' (the default) to follow the thread through the API. Nothing was enqueued",
            )

    def check_admin(self, identity: str, what: str) -> None:
        if not self.admin(identity):
            raise ApiError(403, "forbidden", f"{identity} may not {what}: that needs [access].admins")

    def check_metrics(self, identity: str) -> None:
        if not self.admin(identity) and not self.tools.is_member(identity, self.tools.access.metrics):
            raise ApiError(
                403, "forbidden", f"{identity} may not read /metrics: that needs [access].metrics or [access].admins"
            )
