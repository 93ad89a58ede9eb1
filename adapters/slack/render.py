"""The `slack` outbox rendered with the Web API: replies in thread (or inline in a direct message),
the work in progress as Slack's assistant status, answers streamed with their tool steps, approval
cards edited into a record after the decision, questions with choices, and notices only one person sees.

Everything a later message needs (a command thread's first message, the progress of the work, each
card, what Slack refused) is kept in Redis by `SlackState`, so any process can render any message.

**Slack's agent surface, with a fallback.** A progress note ("running deploy…") sets the thread's
status (`assistant.threads.setStatus`); a final answer that follows tool steps is streamed
(`chat.startStream` with the steps as completed task updates, `chat.appendStream` with the text,
`chat.stopStream`), and the status is cleared. Where Slack refuses these (`missing_scope`,
`not_allowed_token_type`, `unknown_method`, ...) the refusal is remembered in Redis for an hour per
kind of place (direct messages, channels), and every renderer does what it did before: the progress
as one message edited as the work goes on (deleted when the answer lands), the answer posted. An
inline direct message (no thread) always uses the fallback: both need a thread.

**Exactly once.** Each post carries its outbound id (and part) in Slack message metadata, and is
marked as begun in Redis before the call. A renderer that died between Slack's answer and the
delivery record leaves that mark; the renderer that takes the message over looks for the post in
the thread (or channel) first and posts only what is missing. Edits and deletes are idempotent by
nature. A stream can carry metadata only when it stops, so its ts is kept in Redis as soon as
`chat.startStream` answers: a renderer that takes over a stream that began finishes that message
(stops it, and writes the whole answer into it with `chat.update`) rather than streaming again.
The stream starts with the task steps only, never the answer's text, so the one window left (dying
between `chat.startStream`'s answer and keeping its ts) leaves a message with the steps and no
answer, and the answer is streamed once more below it: the steps show twice, the answer once.
Ephemeral notices and file uploads cannot carry metadata: those may show twice in that window.
A slash command's first message is posted by one renderer at a time (a claim in Redis).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import blocks
from adapters.slack.state import Card, Origin, Place, Progress, SlackState, place_kind, thread_key
from core import ApprovalRequest, ChannelError, DecisionReceipt, Notice, Outbound, Question, Reply, people

log = logging.getLogger(__name__)

UNREACHABLE = {"not_in_channel", "channel_not_found", "user_not_in_channel", "is_archived"}
# Slack's answers that mean "this app may not use this feature here" (not "this message is wrong"): the
# renderer falls back and remembers it.
REFUSALS = {
    "not_allowed_token_type",
    "missing_scope",
    "unknown_method",
    "method_deprecated",
    "feature_not_enabled",
    "not_allowed",
    "team_not_allowed",
    "access_denied",
}
OUTBOUND_EVENT = "opsbot_outbound"  # the metadata event type that marks the bot's posts with their outbound id
LOOKBACK = 200  # messages searched for an earlier post: a thread's first page, a channel's latest
OPENING_RETRY_SECONDS = 1.0
STREAM_CHARS = 12_000  # chat.appendStream takes at most this much markdown at once
STATUS_CHARS = 150
TASK_CHARS = 256


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error", "unknown_error"))


def _retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked us to wait (HTTP 429 `Retry-After`), None for any other answer."""
    if exc.response.status_code != 429:
        return None
    headers = {str(name).lower(): value for name, value in (exc.response.headers or {}).items()}
    value = headers.get("retry-after")
    try:
        return float(str(value[0] if isinstance(value, list) else value))
    except (TypeError, ValueError):
        return 1.0


def _marked(message: dict[str, Any], key: str) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(metadata.get("event_type") == OUTBOUND_EVENT and payload.get("outbound_id") == key)


def _marker(key: str) -> dict[str, Any]:
    return {"event_type": OUTBOUND_EVENT, "event_payload": {"outbound_id": key}}


def _team(outbound: Outbound) -> str:
    origin = Origin.of(outbound.reply_to)
    return origin.team if origin else ""


class SlackRenderer:
    def __init__(self, client: AsyncWebClient, state: SlackState, approval_channel: str | None = None) -> None:
        self.client = client
        self.state = state
        self.approval_channel = approval_channel

    async def render(self, outbound: Outbound) -> None:
        """Show one outbound message; Slack failures become ChannelError (the bus retries, then parks it)."""
        try:
            await self._render(outbound)
        except SlackApiError as exc:
            if (retry_after := _retry_after(exc)) is not None:
                raise ChannelError(
                    f"Slack rate-limited {outbound.kind} {outbound.id}; retrying in {retry_after:g}s",
                    retry_after=retry_after,
                ) from exc
            raise ChannelError(
                f"Slack refused {outbound.kind} {outbound.id}: {_error(exc)}; check the bot's scopes "
                "and that it is a member of the channel"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ChannelError(
                f"Slack unreachable for {outbound.kind} {outbound.id}: {exc}; check SLACK_API_URL"
            ) from exc

    async def _render(self, outbound: Outbound) -> None:
        await self._title(outbound)
        match outbound:
            case Reply(final=False):
                await self._progress(outbound)
            case Reply():
                await self._reply(outbound)
            case ApprovalRequest():
                await self._approval(outbound)
            case DecisionReceipt():
                await self._receipt(outbound)
            case Question():
                await self._question(outbound)
            case Notice() if outbound.to:
                await self._ephemeral(outbound)
            case Notice():
                if place := await self._thread_or_drop(outbound):
                    text = blocks.notice_text(outbound.level, outbound.text, _team(outbound))
                    await self._send(outbound.id, place, text)

    # --- threads ------------------------------------------------------------------------------

    async def _thread(self, outbound: Outbound, *, open_it: bool = True) -> Place | None:
        """The Slack thread of the outbound's conversation; a slash command's thread is opened here.

        A direct message's top-level conversation has no thread: Place(channel, "") is answered inline."""
        origin = Origin.of(outbound.reply_to)
        if origin is None:
            return None
        if origin.thread_ts or not origin.command:
            return Place(origin.channel, origin.thread_ts)
        root = await self.state.root(outbound.conversation)
        if root is not None or not open_it:
            return root
        if not await self.state.claim_opening(outbound.conversation):
            raise ChannelError(
                f"another renderer is opening the Slack thread of {outbound.conversation}; retrying",
                retry_after=OPENING_RETRY_SECONDS,
            )
        try:
            root = await self.state.root(outbound.conversation)  # opened between our look and our claim
            return root or await self._open(outbound, origin)
        finally:
            await self.state.release_opening(outbound.conversation)

    async def _open(self, outbound: Outbound, origin: Origin) -> Place:
        """Post a slash command's first message; its replies are the thread."""
        key = f"opener:{outbound.conversation}"
        opener = f"{blocks.person(f'slack:{origin.team}:{origin.user}')} used `{blocks.escape(origin.command)}`"
        try:
            channel, ts = await self._post(key, channel=origin.channel, text=opener)
        except SlackApiError as exc:
            if _error(exc) not in UNREACHABLE or not origin.user:
                raise
            # A command typed where the bot is not a member: continue in a direct message.
            dm = f"{opener} in <#{origin.channel}>"
            channel, ts = await self._post(f"{key}:dm", channel=origin.user, text=dm)
        root = Place(channel, ts)
        await self.state.set_root(outbound.conversation, root)
        await self.state.own_thread(thread_key(origin.team, root.channel, root.thread_ts), outbound.conversation)
        return root

    async def _thread_or_drop(self, outbound: Outbound) -> Place | None:
        place = await self._thread(outbound)
        if place is None:
            log.warning("slack: %s %s is for a thread that is not on Slack; dropped", outbound.kind, outbound.id)
        return place

    async def _title(self, outbound: Outbound) -> None:
        """An assistant thread is titled once, from its first request (best effort)."""
        origin = Origin.of(outbound.reply_to)
        if origin is None or not origin.title or not origin.thread_ts:
            return
        if not await self.state.claim_title(thread_key(origin.team, origin.channel, origin.thread_ts)):
            return
        title = blocks.clip(people.plain(origin.title), 200)
        try:
            await self.client.assistant_threads_setTitle(
                channel_id=origin.channel, thread_ts=origin.thread_ts, title=title
            )
        except SlackApiError as exc:
            log.info("slack: the assistant thread's title was not set: %s", _error(exc))

    async def _send(
        self, key: str, place: Place, text: str, block_list: list[blocks.Block] | None = None
    ) -> tuple[str, str]:
        """Post in `place` (a reply when it has a thread), once for `key`; returns the message's channel and ts."""
        kwargs: dict[str, Any] = {"channel": place.channel, "text": text}
        if place.thread_ts:
            kwargs["thread_ts"] = place.thread_ts
        if block_list is not None:
            kwargs["blocks"] = block_list
        return await self._post(key, **kwargs)

    async def _post(self, key: str, **kwargs: Any) -> tuple[str, str]:
        """chat.postMessage marked with `key`; when an earlier attempt began, the post it made is reused."""
        if not await self.state.begin(key):
            found = await self._posted(key, str(kwargs["channel"]), str(kwargs.get("thread_ts", "")))
            if found is not None:
                log.info("slack: %s was posted before its renderer stopped (ts %s); not posted again", key, found[1])
                return found
        sent = await self.client.chat_postMessage(**kwargs, metadata=_marker(key))
        return str(sent["channel"]), str(sent["ts"])

    async def _posted(self, key: str, channel: str, thread_ts: str) -> tuple[str, str] | None:
        """The (channel, ts) of the bot's post marked `key`, if Slack shows one; None when it cannot tell."""
        try:
            if thread_ts:
                page = await self.client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=LOOKBACK
                )
            else:
                page = await self.client.conversations_history(
                    channel=channel, include_all_metadata=True, limit=LOOKBACK
                )
        except SlackApiError as exc:
            if _retry_after(exc) is not None:
                raise
            log.warning(
                "slack: cannot look for an earlier post of %s (%s); posting it, perhaps twice", key, _error(exc)
            )
            return None
        for message in page.get("messages") or []:
            if _marked(message, key):
                return channel, str(message["ts"])
        return None

    async def _refused(self, feature: str, place: Place, exc: SlackApiError) -> None:
        """Slack would not `feature` here: remember a refusal of the feature itself; 429s are retried."""
        if _retry_after(exc) is not None:
            raise exc
        error = _error(exc)
        if error in REFUSALS:
            log.info("slack: %s refused in %s (%s); falling back for the next hour", feature, place.channel, error)
            await self.state.refuse(feature, place_kind(place.channel), error)
        else:
            log.info("slack: %s failed in %s (%s); falling back for this message", feature, place.channel, error)

    # --- progress -----------------------------------------------------------------------------

    async def _progress(self, reply: Reply) -> None:
        """The thread's status says what runs now; where Slack has none, one message edited as the work goes on."""
        place = await self._thread_or_drop(reply)
        if place is None:
            return
        progress = await self.state.status(reply.conversation)
        note = people.plain(reply.text)
        if all(step_id != reply.id for step_id, _ in progress.steps):  # a redelivered note counts once
            progress.steps.append((reply.id, note))
        if not progress.ts and place.thread_ts and "status" not in await self.state.refused(place_kind(place.channel)):
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=place.channel, thread_ts=place.thread_ts, status=blocks.clip(note, STATUS_CHARS)
                )
                progress.assistant = True
                await self.state.set_status(reply.conversation, progress)
                return
            except SlackApiError as exc:
                await self._refused("status", place, exc)
        await self._progress_message(reply, place, progress)

    async def _progress_message(self, reply: Reply, place: Place, progress: Progress) -> None:
        text = f":hourglass_flowing_sand: {blocks.clip(blocks.mrkdwn(reply.text, _team(reply)), blocks.MESSAGE_CHARS)}"
        if progress.ts:
            try:
                await self.client.chat_update(channel=place.channel, ts=progress.ts, text=text)
                await self.state.set_status(reply.conversation, progress)
                return
            except SlackApiError as exc:
                if _error(exc) not in {"message_not_found", "cant_update_message"}:
                    raise
        _, progress.ts = await self._send(reply.id, place, text)
        await self.state.set_status(reply.conversation, progress)

    # --- replies ------------------------------------------------------------------------------

    async def _reply(self, reply: Reply) -> None:
        """The answer (streamed with its steps where Slack can), then the progress shown meanwhile goes."""
        place = await self._thread_or_drop(reply)
        if place is None or not reply.text.strip():
            return
        progress = await self.state.status(reply.conversation)
        pieces = blocks.split_text(reply.text, team=_team(reply))
        if len(pieces) > blocks.MAX_MESSAGES:
            await self._upload(reply, place)
        elif not (progress.steps and await self._stream(reply, place, progress.steps)):
            for part, piece in enumerate(pieces):
                await self._send(f"{reply.id}:{part}", place, piece)
        # Only once the answer is shown: a renderer that dies before this streams it again the same way.
        await self._clear_progress(reply.conversation, place, progress)

    async def _clear_progress(self, conversation: str, place: Place, progress: Progress) -> None:
        if not (progress.ts or progress.steps or progress.assistant):
            return
        if progress.assistant:  # Slack clears it when a reply is posted; said explicitly, for a stream too
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=place.channel, thread_ts=place.thread_ts, status=""
                )
            except SlackApiError as exc:
                log.info("slack: status of %s not cleared: %s", place.thread_ts, _error(exc))
        if progress.ts:
            try:
                await self.client.chat_delete(channel=place.channel, ts=progress.ts)
            except SlackApiError as exc:
                log.info("slack: progress message %s not deleted: %s", progress.ts, _error(exc))
        await self.state.clear_status(conversation)

    async def _upload(self, reply: Reply, place: Place) -> None:
        lines = reply.text.count("\n") + 1
        await self.client.files_upload_v2(
            channel=place.channel,
            thread_ts=place.thread_ts or None,
            content=people.plain(reply.text),
            filename="output.txt",
            title="output",
            initial_comment=f"The answer is {len(reply.text)} characters ({lines} lines); it is attached.",
        )

    async def _stream(self, reply: Reply, place: Place, steps: list[tuple[str, str]]) -> bool:
        """Stream the answer below its tool steps; False when Slack cannot here (then it is posted)."""
        origin = Origin.of(reply.reply_to)
        kind = place_kind(place.channel)
        if origin is None or not place.thread_ts or (kind == "channel" and not origin.user):
            return False
        if "stream" in await self.state.refused(kind):
            return False
        key = f"{reply.id}:0"
        text = blocks.mrkdwn(reply.text, origin.team)
        if not await self.state.begin(key):
            if await self._posted(key, place.channel, place.thread_ts) is not None:
                return True  # streamed and stopped before its renderer stopped
            if (ts := await self.state.stream(key)) is not None:
                await self._finish_stream(key, place.channel, ts, text)
                return True
        recipient = {"recipient_team_id": origin.team, "recipient_user_id": origin.user} if kind == "channel" else {}
        tasks = [
            {"type": "task_update", "id": step_id, "title": blocks.clip(title, TASK_CHARS), "status": "complete"}
            for step_id, title in steps
        ]
        try:
            started = await self.client.chat_startStream(
                channel=place.channel,
                thread_ts=place.thread_ts,
                chunks=tasks,
                task_display_mode="timeline",
                **recipient,
            )
        except SlackApiError as exc:
            await self._refused("stream", place, exc)
            return False
        ts = str(started["ts"])
        await self.state.set_stream(key, ts)
        for start in range(0, len(text), STREAM_CHARS):
            await self.client.chat_appendStream(
                channel=place.channel, ts=ts, markdown_text=text[start : start + STREAM_CHARS]
            )
        await self.client.chat_stopStream(channel=place.channel, ts=ts, metadata=_marker(key))
        return True

    async def _finish_stream(self, key: str, channel: str, ts: str, text: str) -> None:
        """A stream another renderer started: stop it if it still runs, and make it the whole answer, marked."""
        with contextlib.suppress(SlackApiError):
            await self.client.chat_stopStream(channel=channel, ts=ts, metadata=_marker(key))
        await self.client.chat_update(channel=channel, ts=ts, text=text, metadata=_marker(key))
        log.info("slack: the stream of %s (ts %s) was finished by the renderer that took it over", key, ts)

    # --- approvals ----------------------------------------------------------------------------

    async def _link(self, request: ApprovalRequest, thread: Place | None) -> str:
        """A link to the request thread for a card shown elsewhere: Slack's permalink, else the console's."""
        if thread is None or not thread.thread_ts:
            return request.thread_url
        try:
            found = await self.client.chat_getPermalink(channel=thread.channel, message_ts=thread.thread_ts)
            return str(found["permalink"])
        except SlackApiError as exc:
            if _retry_after(exc) is not None:
                raise
            log.info("slack: no permalink for the thread of %s: %s", request.approval_id, _error(exc))
            return request.thread_url

    async def _approval(self, request: ApprovalRequest) -> None:
        shown = await self.state.card(request.approval_id)
        if shown is not None:  # the same request again, as approvals of a quorum arrive: update the card
            return await self._update_card(shown, request)
        thread = await self._thread(request)
        team = _team(request)
        if self.approval_channel:
            request = request.model_copy(update={"thread_url": await self._link(request, thread)})
            text, block_list = blocks.approval_card(request, team, request.thread_url)
            channel, ts = await self._send(request.id, Place(self.approval_channel), text, block_list)
            card = Card(channel, ts, "", request)
            if thread is not None:
                where = f"<#{self.approval_channel}>"
                await self._send(
                    f"{request.id}:pointer",
                    thread,
                    f":lock: `{blocks.escape(request.tool)}` is waiting for approval `{request.approval_id}` in {where}",
                )
        elif thread is not None:
            text, block_list = blocks.approval_card(request, team)
            channel, ts = await self._send(request.id, thread, text, block_list)
            card = Card(channel, ts, thread.thread_ts, request)
        else:
            log.error(
                "slack: approval %s is for a thread on another channel and SLACK_APPROVAL_CHANNEL is not set; "
                "set it to a channel id to show such requests in Slack",
                request.approval_id,
            )
            return
        await self.state.set_card(card)

    async def _update_card(self, card: Card, request: ApprovalRequest) -> None:
        link = card.request.thread_url if card.channel == self.approval_channel else ""
        request = request.model_copy(update={"thread_url": card.request.thread_url})
        text, block_list = blocks.approval_card(request, _team(request), link)
        await self.client.chat_update(channel=card.channel, ts=card.ts, text=text, blocks=block_list)
        await self.state.set_card(Card(card.channel, card.ts, card.thread_ts, request))

    async def _receipt(self, receipt: DecisionReceipt) -> None:
        """Edit the card into a record of the decision; say it in the thread when the card is elsewhere."""
        card = await self.state.card(receipt.approval_id)
        if card is not None:
            team = _team(card.request)
            link = card.request.thread_url if card.channel == self.approval_channel else ""
            text, block_list = blocks.decided_card(card.request, receipt, team, link)
            await self.client.chat_update(channel=card.channel, ts=card.ts, text=text, blocks=block_list)
        thread = await self._thread(receipt, open_it=False)
        if thread is None:
            return
        same = card is not None and card.channel == thread.channel and card.thread_ts == thread.thread_ts
        if not same:
            await self._send(receipt.id, thread, blocks.receipt_line(receipt, _team(receipt)))

    async def _question(self, question: Question) -> None:
        thread = await self._thread_or_drop(question)
        origin = Origin.of(question.reply_to)
        if thread is None or origin is None:
            return
        text, block_list = blocks.question_message(question, origin.team, inline=not thread.thread_ts)
        if block_list is not None and question.call_id:
            await self.state.set_asked(question.call_id, question.conversation)  # for its buttons
        await self._send(question.id, thread, text, block_list)
        if thread.thread_ts:  # the answer is the next reply in this thread, with or without a mention
            key = thread_key(origin.team, thread.channel, thread.thread_ts)
            await self.state.own_thread(key, question.conversation)

    async def _ephemeral(self, notice: Notice) -> None:
        """A message only `notice.to` sees, where they are; a direct message when that fails."""
        user = blocks.slack_user(notice.to)
        origin = Origin.of(notice.reply_to)
        if user is None or origin is None:
            log.warning("slack: notice %s is for %s, who is not reachable on Slack; dropped", notice.id, notice.to)
            return
        text = blocks.notice_text(notice.level, notice.text, origin.team)
        kwargs: dict[str, Any] = {"channel": origin.channel, "user": user, "text": text}
        if origin.thread_ts:
            kwargs["thread_ts"] = origin.thread_ts
        try:
            await self.client.chat_postEphemeral(**kwargs)
        except SlackApiError as exc:
            if _error(exc) not in UNREACHABLE:
                raise
            await self._post(notice.id, channel=user, text=text)
