"""Standing grants: given from a card with an approval, used by later matching calls, listed and revoked.

Rules, all in code:
- Only the tool's policy can allow them (`approval.grants`: the longest, which calls, which arguments may
  vary); none where a call needs more than one approval (a quorum, or a change freeze's override) or
  waits (`wait`): the configuration refuses those, and a request needing more is refused a grant.
- The grantor is whoever approves the request: the same permission checks as any decision
  (`Approvals.refusal_to_decide`) come first; a grant asked for on a call the policy does not let a
  grant cover, or longer than it allows, is refused and nothing is decided.
- A grant is stored only after the approved call was recorded as started, so a worker dying meanwhile
  leaves no grant (fail closed); the thread records `grant_given` with the decision.
- A later call matches when it is the same tool for the same requester with the same arguments (those
  in `vary` aside), within the grant's time and never longer than the policy's `max_for` now, the
  policy in force still allowing grants for it and its grantor still an allowed approver. A freeze or a
  target lock still holds it (`core.runtime.holds` admits it first, and checks again before it runs);
  a call overriding a freeze never matches. The call then runs at once, recording `grant_used`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from core.domain import events as ev
from core.domain.audit import grant_revoked
from core.domain.durations import words
from core.domain.errors import ApprovalError, ConflictError, StoreUnavailable
from core.domain.grants import Grant, asked_grant, fits
from core.domain.ids import new_approval_id
from core.domain.people import when, who
from core.domain.ports import Clock
from core.redis.audit import AuditLog
from core.redis.grants import StoredGrants
from core.redis.store import ApprovalRecord
from core.runtime.approvals import digest
from core.runtime.run import Run
from core.tools.registry import ApprovalPolicy, ToolRegistry, ToolSpec, args_hash

log = logging.getLogger(__name__)


def check_grant(grants: Grants | None, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> None:
    """Raise ApprovalError when this approval asks for a standing grant it may not give (none without grants)."""
    if grants is not None and (refusal := grants.refusal_to_grant(trigger, record)):
        raise ApprovalError(refusal)


class Grants:
    def __init__(self, stored: StoredGrants, tools: ToolRegistry, clock: Clock, audit: AuditLog | None = None) -> None:
        self.stored = stored
        self.tools = tools
        self.clock = clock
        self.audit = audit  # where a revocation is recorded (giving and using one are thread events)

    # --- giving ------------------------------------------------------------------------------

    def asked(self, trigger: ev.DecisionTrigger) -> tuple[int | None, str] | None:
        """The grant an approval asks for: (seconds, None for the policy's longest; the comment), or None."""
        if trigger.decision != "approve":
            return None
        if trigger.grant_for is not None:
            return trigger.grant_for or None, trigger.comment
        return asked_grant(trigger.comment)

    def refusal_to_grant(self, trigger: ev.DecisionTrigger, record: ApprovalRecord) -> str | None:
        """Why this approval may not give the grant it asks for (then nothing is decided), or None."""
        asked = self.asked(trigger)
        if asked is None:
            return None
        length, _ = asked
        nothing = "Nothing changed: approve without `grant`, or ask for what the policy allows"
        if record.tool not in self.tools:
            return f"{record.tool} is no longer one of the bot's tools, so no grant can be given for it. {nothing}"
        policy = self.tools.get(record.tool).policy(record.args)
        terms = policy.grants
        if terms is None or not policy.applies(record.args):
            return f"{record.tool}'s approval policy allows no standing grants for these arguments. {nothing}"
        if record.needed > 1:
            return (
                f"approval {record.approval_id} needs {record.needed} approvals (a quorum, or a change freeze's "
                f"override): one approver's standing grant cannot stand in for them. {nothing}"
            )
        if not fits(terms.when, record.args):
            covered = ", ".join(f"{name} in {values}" for name, values in terms.when.items())
            return f"standing grants for {record.tool} cover only calls with {covered}; this one is not. {nothing}"
        if length is not None and length > terms.max_for:
            return (
                f"a standing grant for {record.tool} lasts at most {words(terms.max_for)}, not {words(length)}. "
                f"{nothing}"
            )
        return None

    def given(
        self, run: Run, trigger: ev.DecisionTrigger, record: ApprovalRecord
    ) -> tuple[Grant, ev.GrantGiven] | None:
        """The grant this approval gives, and its event for the decision's commit; None when it asks for none
        (or the configuration changed since the approval was checked). Not stored: `keep` does, after the commit."""
        asked = self.asked(trigger)
        if asked is None or self.refusal_to_grant(trigger, record) is not None:
            return None
        terms = self.tools.get(record.tool).policy(record.args).grants
        assert terms is not None, "refusal_to_grant found the policy's grants"
        now = self.clock.now()
        grant = Grant(
            grant_id=f"g{new_approval_id()}",
            tool=record.tool,
            requester=record.requester,
            args=record.args,
            vary=[name for name in terms.vary],
            granted_by=trigger.sender,
            approval_id=record.approval_id,
            thread_id=record.thread_id,
            channel=trigger.channel,
            created_at=now,
            expires_at=now + timedelta(seconds=asked[0] or terms.max_for),
        )
        event = ev.GrantGiven(
            **run.meta(trigger.sender),
            grant_id=grant.grant_id,
            approval_id=record.approval_id,
            call_id=record.call_id,
            tool=grant.tool,
            requester=grant.requester,
            pattern=grant.pattern(),
            by=grant.granted_by,
            channel=trigger.channel,
            expires_at=grant.expires_at,
            trigger_id=trigger.id,
        )
        run.say(
            f"{who(grant.granted_by)} gave {who(grant.requester)} a standing grant ({grant.grant_id}) for "
            f"{grant.tool} {grant.pattern()} until {when(grant.expires_at)}: those calls run without asking. "
            f"Revoke it with `bot grants revoke {grant.grant_id}` or in the console"
        )
        return grant, event

    async def keep(self, grant: Grant) -> None:
        await self.stored.save(grant, self.clock.now())

    # --- using -------------------------------------------------------------------------------

    async def match(self, run: Run, call: ev.ToolCall, spec: ToolSpec) -> ev.GrantUsed | None:
        """The `grant_used` event for a live grant that covers this gated call, or None: it asks for approval.
        One round trip, and none for a tool whose policy allows no grants."""
        policy = spec.policy(call.args)
        terms = policy.grants
        if terms is None or call.freeze or policy.needed > 1 or not fits(terms.when, call.args):
            return None
        requester = run.state.last_actor or run.state.requester
        now = self.clock.now()
        for grant in sorted(await self.stored.for_call(spec.name, requester), key=lambda g: g.expires_at):
            if self._holds(grant, policy, call, requester) and now < grant.created_at + timedelta(
                seconds=terms.max_for
            ):
                run.say(
                    f"{spec.name} runs under the standing grant {grant.grant_id} from {who(grant.granted_by)} "
                    f"(until {when(grant.expires_at)}); no approval was asked"
                )
                return ev.GrantUsed(
                    **run.meta(),
                    grant_id=grant.grant_id,
                    call_id=call.call_id,
                    tool=spec.name,
                    granted_by=grant.granted_by,
                    args_hash=args_hash(spec.name, call.args),
                    digest=digest(spec.name, call.args, run.state.thread_id),
                    expires_at=grant.expires_at,
                )
        return None

    def _holds(self, grant: Grant, policy: ApprovalPolicy, call: ev.ToolCall, requester: str) -> bool:
        """The grant covers the call now, under the policy in force (it may have narrowed since)."""
        terms = policy.grants
        return (
            terms is not None
            and grant.covers(call.tool, requester, call.args, self.clock.now())
            and all(name in terms.vary for name in grant.vary)
            and self.tools.may_approve(grant.granted_by, policy.deciders, requester, policy.allow_self)
        )

    # --- listing and revoking ----------------------------------------------------------------

    def may_manage(self, identity: str, grant: Grant) -> bool:
        """See and revoke: the admins, the grantor, the requester (giving it up), and the tool's approvers."""
        if identity in (grant.granted_by, grant.requester) or self.tools.is_member(identity, self.tools.access.admins):
            return True
        if grant.tool not in self.tools:
            return False
        return any(
            self.tools.is_member(identity, policy.deciders) for policy in self.tools.get(grant.tool).every_policy
        )

    async def listed(self, identity: str | None = None) -> list[Grant]:
        """The grants kept (live first), those `identity` may see when given."""
        now = self.clock.now()
        found = await self.stored.listed(now)
        shown = [grant for grant in found if identity is None or self.may_manage(identity, grant)]
        return sorted(shown, key=lambda grant: (not grant.live(now), grant.expires_at))

    async def revoke(self, grant_id: str, by: str, *, check: bool = True) -> Grant:
        # `check=False`: an operator at the Redis host (`bot grants revoke`), who may revoke any grant.
        """Revoke a grant now; raises ApprovalError saying why not (unknown, not theirs, ended already)."""
        grant = await self.stored.get(grant_id)
        if grant is None or (check and not self.may_manage(by, grant)):
            raise ApprovalError(
                f"there is no standing grant {grant_id!r} you may see; list them with `bot grants list`"
            )
        now = self.clock.now()
        if grant.revoked_at is not None:
            raise ApprovalError(
                f"grant {grant_id} was already revoked by {who(grant.revoked_by)} at {when(grant.revoked_at)}"
            )
        if not grant.live(now):
            raise ApprovalError(f"grant {grant_id} expired at {when(grant.expires_at)}; nothing to revoke")
        revoked = await self.stored.revoke(grant, by, now)
        if revoked is None:  # revoked by someone else a moment ago
            current = await self.stored.get(grant_id)
            by_whom = f" by {who(current.revoked_by)}" if current is not None and current.revoked_by else ""
            raise ApprovalError(f"grant {grant_id} was already revoked{by_whom}")
        if self.audit is not None:
            try:
                await self.audit.append_fact(grant_revoked(revoked))
            except (StoreUnavailable, ConflictError) as exc:  # the revocation stands: it is what protects
                log.error("grant %s: revoked by %s, but its audit record failed: %s", grant_id, by, exc)
        return revoked
