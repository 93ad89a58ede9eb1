"""The Slack channel: a Bolt app whose listeners turn mentions, DMs, thread replies, slash
commands and buttons (approvals, a question's choices) into triggers, and a renderer for the
`slack` outbox.

The same listeners serve Socket Mode (`SLACK_APP_TOKEN`) and HTTP mode (`routes()`, POST
/slack/events, signed with `SLACK_SIGNING_SECRET`). `routes()` needs no `run`: the HTTP server
of one process (`bot serve`) can receive while another (`bot channels`) runs the renderer and,
in Socket Mode, the WebSocket. A listener only enqueues (one Redis script, after at most one
read) and acks; the core decides everything, including who may approve. Over HTTP a slash
command is answered without Bolt's dispatch (`_fast_command`: the same signature check, then the
same `_command`): Bolt's middleware and matchers cost more than the enqueue (`bench/slack_ack.py`).
Slack's retries, the same message arriving as both `app_mention` and `message`, and replayed
clicks count once.

A direct message's top-level messages are one conversation, answered inline; a Slack thread (in a
channel, in a DM, or an "Agents & AI Apps" assistant thread) is one conversation, answered in it.
An assistant thread gets suggested prompts when it starts; the channel the person views is kept
and sent with each of its messages (`reply_to["slack_viewing"]`), and its first request titles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import socket
from collections import Counter
from typing import Any, Literal, cast
from urllib.parse import parse_qsl

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.slack import blocks, edits, inbound
from adapters.slack.manifest import EVENTS_PATH, command_name, manifest, tool_commands
from adapters.slack.render import SlackRenderer
from adapters.slack.state import Origin, Place, SlackState, dm_key, thread_key
from config.channels import SlackSettings
from core import (
    ApprovalRecord,
    Bus,
    DecisionTrigger,
    MessageTrigger,
    Outbound,
    SnoozeTrigger,
    Store,
    ToolRegistry,
    Trigger,
    deliver,
    new_id,
)

__all__ = ["SlackChannel", "manifest", "web_client"]

log = logging.getLogger(__name__)


def web_client(settings: SlackSettings) -> AsyncWebClient:
    """The Web API client: `SLACK_API_URL`, and 429s retried after Slack's Retry-After."""
    return AsyncWebClient(
        token=settings.bot_token.get_secret_value(),
        base_url=settings.api_url.rstrip("/") + "/",
        retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )


class SlackChannel:
    name = "slack"

    def __init__(
        self,
        settings: SlackSettings,
        *,
        bus: Bus,
        store: Store,
        tools: ToolRegistry,
        client: AsyncWebClient | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self.tools = tools
        self.client = client or web_client(settings)
        if not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in self.client.retry_handlers):
            self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
        self.state = SlackState(store.redis)
        # The renderer sees 429s itself: delivery waits Retry-After without holding a render slot, and
        # other conversations go on meanwhile. Handlers (views.open within 3 s) keep the SDK's retries.
        render_client = AsyncWebClient(
            token=self.client.token,
            base_url=self.client.base_url,
            timeout=self.client.timeout,
            session=self.client.session,
            retry_handlers=[AsyncConnectionErrorRetryHandler()],
        )
        self.renderer = SlackRenderer(render_client, self.state, settings.approval_channel)
        # Inbound deliveries: published, duplicate, ignored, dialog, invalid (an edit refused in its dialog).
        self.stats: Counter[str] = Counter()
        self.app = self._build_app()

    def _build_app(self) -> AsyncApp:
        secret = self.settings.signing_secret
        # Without a signing secret HTTP mode is off (`routes()` is empty); a random one refuses any request.
        signing_secret = secret.get_secret_value() if secret else secrets.token_hex(32)
        self.verifier = SignatureVerifier(signing_secret)
        app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret,
            name="opsbot-slack",
            # Listeners only enqueue, so Slack's answer can wait for them: a failure to enqueue is a 500,
            # which Slack retries (events) or shows to the person (commands, buttons), never a silent loss.
            process_before_response=True,
        )
        # Bolt tries the listeners in this order, building every argument a listener can take for each
        # matcher it runs: the bot's commands are one listener, tried first, so an ack costs one match.
        commands = [self.settings.command, *(command_name(spec) for spec in tool_commands(self.tools))]
        app.command(re.compile("^(?:" + "|".join(map(re.escape, commands)) + ")$"))(self._on_command)
        app.event("message")(self._on_message)
        app.event("app_mention")(self._on_mention)
        app.action(blocks.APPROVE)(self._on_approve)
        app.action(blocks.GRANT)(self._on_approve)
        app.action(blocks.REJECT)(self._on_reject)
        app.action(blocks.SNOOZE)(self._on_snooze)
        app.view(blocks.REJECT_VIEW)(self._on_reject_reason)
        app.action(blocks.EDIT)(self._on_edit)
        app.view(blocks.EDIT_VIEW)(self._on_edit_submit)
        app.action(re.compile(rf"^{re.escape(blocks.CHOICE)}\."))(self._on_choice)
        app.event("assistant_thread_started")(self._on_assistant_thread)
        app.event("assistant_thread_context_changed")(self._on_assistant_thread)
        return app

    # --- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Render the `slack` outbox until `stop`; in Socket Mode also receive over the WebSocket."""
        consumer = f"slack-{socket.gethostname()}-{os.getpid()}"
        if self.settings.app_token is None:
            if self.settings.signing_secret is None:
                log.warning(
                    "slack: neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET is set, so Slack cannot "
                    "send anything to this bot; set one of them"
                )
            else:
                log.info("slack: HTTP mode: Slack posts to %s of `bot serve` or `bot run`; rendering here", EVENTS_PATH)
            await deliver(self.bus, self.name, self.render, stop, consumer)
            return
        handler = AsyncSocketModeHandler(self.app, self.settings.app_token.get_secret_value(), web_client=self.client)
        # Connecting retries on its own until it succeeds; the outbox is delivered meanwhile.
        connecting = asyncio.create_task(handler.connect_async())  # type: ignore[no-untyped-call]
        try:
            await deliver(self.bus, self.name, self.render, stop, consumer)
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await handler.close_async()  # type: ignore[no-untyped-call]

    def routes(self) -> list[BaseRoute]:
        """POST /slack/events for the bot's HTTP server; none without SLACK_SIGNING_SECRET."""
        if self.settings.signing_secret is None:
            return []
        handler = AsyncSlackRequestHandler(self.app)

        async def events(request: Request) -> Response:
            return await self._fast_command(request) or await handler.handle(request)

        return [Route(EVENTS_PATH, events, methods=["POST"])]

    async def render(self, outbound: Outbound) -> None:
        await self.renderer.render(outbound)

    # --- messages ---------------------------------------------------------------------------

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        await self._receive(body, event, context.bot_user_id, mentioned=True)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        await self._receive(body, event, context.bot_user_id, mentioned=False)

    async def _receive(
        self, body: dict[str, Any], event: dict[str, Any], bot_user: str | None, mentioned: bool
    ) -> None:
        """One Events API delivery. Slack's retries (the same event id) and a message that comes as both
        `app_mention` and `message` make the same trigger dedup key: the enqueue counts it once, in the same
        script, so an ack waits on one Redis round trip (two for a channel message: whose thread it is)."""
        trigger = await self._message_trigger(body["team_id"], event, bot_user, mentioned)
        if trigger is None:
            self.stats["ignored"] += 1
            return
        await self._publish(trigger)

    async def _message_trigger(
        self, team: str, raw: dict[str, Any], bot_user: str | None, mentioned: bool
    ) -> MessageTrigger | None:
        """A mention, a DM, or a reply in a thread the bot owns; None for anything else."""
        event = inbound.message_event(raw)
        if event is None:
            return None
        user = event.get("user", "")
        text = inbound.plain_text(event.get("text", ""), bot_user)
        thread_ts = event.get("thread_ts") or event["ts"]
        top_level = thread_ts == event["ts"]
        context: dict[str, str] = {}
        if event.get("channel_type") == "im" and top_level:  # a DM is one conversation, answered inline
            conversation, origin = dm_key(team, event["channel"]), Origin(team, event["channel"], "", user)
        else:
            key = thread_key(team, event["channel"], thread_ts)
            owner, viewing = await self.state.lookup(key)  # one round trip
            if not (mentioned or event.get("channel_type") == "im" or (owner is not None and not top_level)):
                return None  # channel talk that is not a reply in the bot's thread
            conversation = owner or key
            if mentioned and top_level and owner is None:  # a mention on its own: the bot owns the thread it starts
                await self.state.own_thread(key, conversation)
            assistant = {"viewing": viewing, "title": text} if viewing is not None else {}
            if viewing:  # the model reads the channel open beside the assistant thread, as Slack renders it
                context["viewing"] = f"<#{viewing}>"
            origin = Origin(team, event["channel"], thread_ts, user, **assistant)
        return MessageTrigger(
            id=new_id(),
            channel=self.name,
            conversation=conversation,
            sender=inbound.identity(team, user),
            text=text,
            dedup_key=f"slack:message:{team}/{event['channel']}/{event['ts']}",  # app_mention + message: once
            reply_to=origin.reply_to(),
            context=context,
        )

    async def _on_assistant_thread(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """An assistant thread opened (or the person moved to another channel): keep the channel viewed;
        a new thread also gets prompts for the commands this person may use (best effort: Slack may lack
        the feature, and a retried event sets the same prompts)."""
        thread = event["assistant_thread"]
        channel, ts = thread["channel_id"], thread["thread_ts"]
        viewing = str((thread.get("context") or {}).get("channel_id") or "")
        await self.state.set_viewing(thread_key(body["team_id"], channel, ts), viewing)
        if event["type"] != "assistant_thread_started":
            return
        prompts = inbound.suggested_prompts(self.tools, inbound.identity(body["team_id"], thread["user_id"]))
        try:
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=ts, title="Try one of these", prompts=prompts
            )
        except SlackApiError as exc:
            log.info("slack: no suggested prompts for assistant thread %s: %s", ts, exc.response.get("error"))

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(await self._command(cast(inbound.Command, command)))

    async def _command(self, raw: inbound.Command) -> str:
        """Enqueue a slash command; what Slack shows the person at once."""
        text = inbound.command_text(raw, self.settings.command, self.tools)
        if text is None:
            return f"{raw['command']} is not a command of this bot; try `{self.settings.command} help`"
        trigger_id = new_id()
        typed = f"{raw['command']} {raw.get('text', '')}".strip()
        origin = Origin(raw["team_id"], raw["channel_id"], "", raw["user_id"], command=typed)
        await self._publish(
            MessageTrigger(
                id=trigger_id,
                channel=self.name,
                conversation=f"{raw['team_id']}/{raw['channel_id']}/cmd-{trigger_id}",  # until its thread exists
                sender=inbound.identity(raw["team_id"], raw["user_id"]),
                text=text,
                dedup_key=f"slack:command:{raw['trigger_id']}",
                reply_to=origin.reply_to(),
            )
        )
        return f"Working on `{blocks.escape(self.bus.redact(text))}`; the answer comes in a thread here."

    async def _fast_command(self, request: Request) -> Response | None:
        """A slash command over HTTP, answered without Bolt's dispatch (its middleware and matchers cost
        more than the enqueue: `bench/slack_ack.py`); None for anything else, which Bolt handles.

        The same checks as Bolt's for a command: the v0 signature over the body and a timestamp at most
        five minutes old (`SignatureVerifier`); Slack's `ssl_check` requests go to Bolt."""
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return None
        body = (await request.body()).decode()  # Starlette keeps it: Bolt reads the same bytes
        form = dict(parse_qsl(body, keep_blank_values=True))
        if "command" not in form or "ssl_check" in form or not {"team_id", "channel_id", "user_id"} <= form.keys():
            return None
        timestamp, signature = (
            request.headers.get("x-slack-request-timestamp"),
            request.headers.get("x-slack-signature"),
        )
        if not self.verifier.is_valid(body, timestamp, signature):
            return Response('{"error":"invalid request"}', status_code=401, media_type="application/json")
        form.setdefault("trigger_id", new_id())
        answer = await self._command(cast(inbound.Command, form))
        return Response(json.dumps({"text": answer}), media_type="application/json")

    # --- approvals --------------------------------------------------------------------------

    async def _on_approve(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Approve, or "Approve + grant": the same decision, the latter also asking for the longest standing
        grant the policy allows (grant_for=0); the core checks who may decide and whether a grant may be given.
        The click's dedup key holds its action id, so the two buttons never count as one click."""
        await ack()
        approval_id, digest = blocks.decided_value(action["value"])
        grant_for = 0 if action["action_id"] == blocks.GRANT else None
        await self._decide(inbound.click(body, action), approval_id, "approve", digest=digest, grant_for=grant_for)

    async def _on_reject(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """An approver is asked for the reason in a dialog; anyone else hears from the core why not."""
        await ack()
        clicked = inbound.click(body, action)
        approval_id, digest = blocks.decided_value(action["value"])
        if not await self._may_decide(approval_id, inbound.identity(clicked["team"], clicked["user"])):
            await self._decide(clicked, approval_id, "reject", digest=digest)
            return
        if not await self.store.claim(clicked["dedup"]):
            self.stats["duplicate"] += 1
            return
        where = {"team": clicked["team"], "channel": clicked["place"].channel, "message_ts": clicked["message_ts"]}
        where["thread_ts"] = clicked["place"].thread_ts
        where["digest"] = digest
        await self.client.views_open(trigger_id=body["trigger_id"], view=blocks.reject_dialog(approval_id, where))
        self.stats["dialog"] += 1

    async def _on_snooze(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Not now: the core puts the request off for 30 minutes, or tells the person who clicked why not."""
        await ack()
        clicked = inbound.click(body, action)
        approval_id, digest = blocks.decided_value(action["value"])
        await self._publish(SnoozeTrigger(**await self._answering(clicked, approval_id, digest)))

    async def _on_reject_reason(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        meta = json.loads(view["private_metadata"])
        reason = view["state"]["values"][blocks.REASON][blocks.REASON].get("value") or ""
        user = body["user"]["id"]
        clicked = inbound.Click(
            team=meta["team"],
            user=user,
            place=Place(meta["channel"], meta["thread_ts"]),
            message_ts=meta["message_ts"],
            dedup=f"slack:view:{view['id']}:{user}",
        )
        await self._decide(clicked, meta["approval_id"], "reject", reason.strip(), digest=meta.get("digest", ""))

    async def _on_edit(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """An approver gets the call's arguments in a dialog to change, then approve; anyone else (and a
        request no longer pending) hears from the core why not, as from the Approve button."""
        await ack()
        clicked = inbound.click(body, action)
        approval_id, digest = blocks.decided_value(action["value"])
        record = await self.store.get_approval(approval_id)
        sender = inbound.identity(clicked["team"], clicked["user"])
        if record is None or record.status != "pending" or not self._may_approve(record, sender):
            await self._decide(clicked, approval_id, "approve", digest=digest)  # refused by the core, as it checks
            return
        if not await self.store.claim(clicked["dedup"]):
            self.stats["duplicate"] += 1
            return
        place = clicked["place"]
        where = {"team": clicked["team"], "channel": place.channel, "message_ts": clicked["message_ts"]}
        where |= {"thread_ts": place.thread_ts, "digest": digest}
        await self.client.views_open(trigger_id=body["trigger_id"], view=edits.edit_dialog(record, self.tools, where))
        self.stats["dialog"] += 1

    async def _on_edit_submit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The edited arguments: a value that does not fit the tool's schema is shown under its field and
        nothing is sent; otherwise an approval with the changes (none: a plain approval with the comment)."""
        meta = json.loads(view["private_metadata"])
        texts, comment = edits.submitted(view)
        record = await self.store.get_approval(meta["approval_id"])
        changes: dict[str, Any] = {}
        if record is not None:  # else the core says the approval is unknown
            changes, errors = edits.changes(self.tools, record, texts)
            if errors:
                await ack(response_action="errors", errors={f"{edits.FIELD}{k}": v for k, v in errors.items()})
                self.stats["invalid"] += 1
                return
        await ack()
        user = body["user"]["id"]
        clicked = inbound.Click(
            team=meta["team"],
            user=user,
            place=Place(meta["channel"], meta["thread_ts"]),
            message_ts=meta["message_ts"],
            dedup=f"slack:view:{view['id']}:{user}",
        )
        await self._decide(clicked, meta["approval_id"], "approve", comment, meta["digest"], changes or None)

    async def _on_choice(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A choice of a question: its text (or number) as the answer to that question's call."""
        await ack()
        clicked = inbound.click(body, action)
        call_id = str(action.get("block_id", "")).removeprefix(blocks.CHOICE_BLOCK)
        text = action.get("value") or (action.get("selected_option") or {}).get("value", "")
        place = clicked["place"]
        conversation = await self.state.asked(call_id) or thread_key(
            clicked["team"], place.channel, place.thread_ts or clicked["message_ts"]
        )
        await self._publish(
            MessageTrigger(
                id=new_id(),
                channel=self.name,
                conversation=conversation,
                sender=inbound.identity(clicked["team"], clicked["user"]),
                text=str(text),
                answers=call_id,
                dedup_key=clicked["dedup"],
                reply_to=Origin(clicked["team"], place.channel, place.thread_ts, clicked["user"]).reply_to(),
            )
        )

    async def _may_decide(self, approval_id: str, sender: str) -> bool:
        record = await self.store.get_approval(approval_id)
        return (
            record is not None
            and record.status == "pending"
            and self.tools.may_approve(sender, record.approvers, record.requester, record.allow_self)
        )

    def _may_approve(self, record: ApprovalRecord, sender: str) -> bool:
        """The core's own check (`Approvals.refusal_to_decide`): whoever may decide the request now."""
        return self.tools.may_approve(sender, record.allowed, record.requester, record.allow_self)

    async def _decide(
        self,
        clicked: inbound.Click,
        approval_id: str,
        decision: Literal["approve", "reject"],
        comment: str = "",
        digest: str = "",
        args: dict[str, Any] | None = None,
        grant_for: int | None = None,
    ) -> None:
        """A decision in the approval's own conversation, so its receipt edits the card once;
        a refusal goes to the person who clicked, where they clicked. `args`: an approval of edited arguments;
        `grant_for`: an approval that also gives a standing grant (seconds, 0: the longest the policy allows)."""
        fields = await self._answering(clicked, approval_id, digest)
        await self._publish(
            DecisionTrigger(**fields, decision=decision, comment=comment, args=args, grant_for=grant_for)
        )

    async def _answering(self, clicked: inbound.Click, approval_id: str, digest: str) -> dict[str, Any]:
        """The fields of a trigger answering an approval from a click: in the approval's own conversation
        (so its receipt edits the card once), replying where the person clicked."""
        card = await self.state.card(approval_id)
        place = clicked["place"]
        fallback = thread_key(clicked["team"], place.channel, place.thread_ts or clicked["message_ts"])
        return {
            "id": new_id(),
            "channel": self.name,
            "conversation": card.request.conversation if card else fallback,
            "sender": inbound.identity(clicked["team"], clicked["user"]),
            "approval_id": approval_id,
            "digest": digest,
            "dedup_key": clicked["dedup"],
            "reply_to": Origin(clicked["team"], place.channel, place.thread_ts, clicked["user"]).reply_to(),
        }

    async def _publish(self, trigger: Trigger) -> None:
        self.stats["published" if await self.bus.publish(trigger) else "duplicate"] += 1
