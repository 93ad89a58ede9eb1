"""The `slack` outbox rendered with the Web API: replies in thread, one edited progress message,
approval cards edited after the decision, questions, and notices only one person sees.

Everything a later message needs (a command thread's first message, the progress message,
each card) is kept in Redis by `SlackState`, so any process can render any message.

Each post carries its outbound id (and part) in Slack message metadata, and is marked as begun
in Redis before the call. A renderer that died between Slack's answer and the delivery record
leaves that mark; the renderer that takes the message over looks for the post in the thread (or
channel) first and posts only what is missing. Edits and deletes are idempotent by nature.
Ephemeral notices and file uploads cannot carry metadata: those may show twice in that window.
A slash command's first message is posted by one renderer at a time (a claim in Redis).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import blocks
from adapters.slack.state import Card, Origin, Place, SlackState, thread_key
from core import ApprovalRequest, ChannelError, DecisionReceipt, Notice, Outbound, Question, Reply

log = logging.getLogger(__name__)

UNREACHABLE = {"not_in_channel", "channel_not_found", "user_not_in_channel", "is_archived"}
OUTBOUND_EVENT = "opsbot_outbound"  # the metadata event type that marks the bot's posts with their outbound id
LOOKBACK = 200  # messages searched for an earlier post: a thread's first page, a channel's latest
OPENING_RETRY_SECONDS = 1.0


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
                    await self._send(outbound.id, place, blocks.notice_text(outbound.level, outbound.text))

    # --- threads ------------------------------------------------------------------------------

    async def _thread(self, outbound: Outbound, *, open_it: bool = True) -> Place | None:
        """The Slack thread of the outbound's conversation; a slash command's thread is opened here."""
        origin = Origin.of(outbound.reply_to)
        if origin is None:
            return None
        if origin.thread_ts:
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
        opener = f"{blocks.who(f'slack:{origin.team}:{origin.user}')} used `{blocks.escape(origin.command)}`"
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
        metadata = {"event_type": OUTBOUND_EVENT, "event_payload": {"outbound_id": key}}
        sent = await self.client.chat_postMessage(**kwargs, metadata=metadata)
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

    # --- replies ------------------------------------------------------------------------------

    async def _progress(self, reply: Reply) -> None:
        """One status message per thread, edited as the work goes on."""
        place = await self._thread_or_drop(reply)
        if place is None:
            return
        text = f":hourglass_flowing_sand: {blocks.clip(blocks.escape(reply.text), blocks.MESSAGE_CHARS)}"
        ts = await self.state.status(reply.conversation)
        if ts is not None:
            try:
                await self.client.chat_update(channel=place.channel, ts=ts, text=text)
                return
            except SlackApiError as exc:
                if _error(exc) not in {"message_not_found", "cant_update_message"}:
                    raise
        _, sent_ts = await self._send(reply.id, place, text)
        await self.state.set_status(reply.conversation, sent_ts)

    async def _reply(self, reply: Reply) -> None:
        place = await self._thread_or_drop(reply)
        if place is None or not reply.text.strip():
            return
        ts = await self.state.status(reply.conversation)
        if ts is not None:  # the work is done: the progress message goes, the answer stays
            await self.state.clear_status(reply.conversation)
            try:
                await self.client.chat_delete(channel=place.channel, ts=ts)
            except SlackApiError as exc:
                log.info("slack: progress message %s not deleted: %s", ts, _error(exc))
        pieces = blocks.split_text(reply.text)
        if len(pieces) > blocks.MAX_MESSAGES:
            lines = reply.text.count("\n") + 1
            await self.client.files_upload_v2(
                channel=place.channel,
                thread_ts=place.thread_ts or None,
                content=reply.text,
                filename="output.txt",
                title="output",
                initial_comment=f"The answer is {len(reply.text)} characters ({lines} lines); it is attached.",
            )
            return
        for part, piece in enumerate(pieces):
            await self._send(f"{reply.id}:{part}", place, piece)

    # --- approvals ----------------------------------------------------------------------------

    async def _approval(self, request: ApprovalRequest) -> None:
        text, block_list = blocks.approval_card(request)
        thread = await self._thread(request)
        if self.approval_channel:
            channel, ts = await self._send(request.id, Place(self.approval_channel), text, block_list)
            card = Card(channel, ts, "", request)
            if thread is not None:
                where = f"<#{self.approval_channel}>"
                await self._send(
                    f"{request.id}:pointer",
                    thread,
                    f":lock: `{request.tool}` is waiting for approval `{request.approval_id}` in {where}",
                )
        elif thread is not None:
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

    async def _receipt(self, receipt: DecisionReceipt) -> None:
        """Edit the card in place (buttons gone); say it in the thread when the card is elsewhere."""
        card = await self.state.card(receipt.approval_id)
        if card is not None:
            text, block_list = blocks.decided_card(card.request, receipt)
            await self.client.chat_update(channel=card.channel, ts=card.ts, text=text, blocks=block_list)
        thread = await self._thread(receipt, open_it=False)
        if thread is not None and (card is None or card.place != thread):
            await self._send(receipt.id, thread, f"{blocks.decision_line(receipt)} (approval `{receipt.approval_id}`)")

    async def _question(self, question: Question) -> None:
        thread = await self._thread_or_drop(question)
        origin = Origin.of(question.reply_to)
        if thread is None or origin is None:
            return
        await self._send(
            question.id, thread, f":question: {blocks.escape(question.question)}\n_Answer with a reply in this thread._"
        )
        # The answer is the next reply in this thread, with or without a mention.
        await self.state.own_thread(thread_key(origin.team, thread.channel, thread.thread_ts), question.conversation)

    async def _ephemeral(self, notice: Notice) -> None:
        """A message only `notice.to` sees, where they are; a direct message when that fails."""
        user = blocks.slack_user(notice.to)
        origin = Origin.of(notice.reply_to)
        if user is None or origin is None:
            log.warning("slack: notice %s is for %s, who is not reachable on Slack; dropped", notice.id, notice.to)
            return
        text = blocks.notice_text(notice.level, notice.text)
        kwargs: dict[str, Any] = {"channel": origin.channel, "user": user, "text": text}
        if origin.thread_ts:
            kwargs["thread_ts"] = origin.thread_ts
        try:
            await self.client.chat_postEphemeral(**kwargs)
        except SlackApiError as exc:
            if _error(exc) not in UNREACHABLE:
                raise
            await self._post(notice.id, channel=user, text=text)
