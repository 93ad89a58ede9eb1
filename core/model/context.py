"""The thread rendered for the model under a token budget (factor 3).

Tool calls become `tool_use` / `tool_result` pairs, so a rejection or a failure reaches the
model as an error tool result; everything people wrote sits in tagged, escaped blocks. When
the rendering is over budget, old tool output and resolved errors are summarised first, then
the oldest turns are folded into one summary block; nothing is dropped without a trace.

After a hand-off (factor 10) the thread is rendered for the agent that holds it now: calls of
tools it does not have, made by an earlier agent, become `<earlier_call>` blocks with their
outcome, and the hand-off itself a `<handed_off>` block carrying the note.

The request always alternates: it starts with a user message, consecutive same-role messages (a
reply's result, then the next message in the thread) are merged into one, and each `tool_use`
is answered by a `tool_result` at the head of the message right after it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from core.domain import events as ev
from core.domain import people

RECENT_RESULTS_KEPT = 4
SUMMARY_CHARS = 300
CHARS_PER_TOKEN = 4
SUMMARY_RESERVE = 100  # tokens kept free for the block that replaces folded turns

Message = dict[str, Any]


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _tag(name: str, body: str, **attrs: str) -> dict[str, Any]:
    rendered = "".join(f' {key}="{_escape(value)}"' for key, value in attrs.items())
    return {"type": "text", "text": f"<{name}{rendered}>\n{_escape(body)}\n</{name}>"}


class _Builder:
    def __init__(self, known_tools: set[str]) -> None:
        self.known = known_tools
        self.turns: list[list[Message]] = [[]]
        self.user_blocks: list[dict[str, Any]] = []
        self.open_call: ev.ToolCall | None = None
        self.foreign: ev.ToolCall | None = None  # a call of a tool this agent does not have
        self.agent = ""
        self.channel = ""

    def person(self, identity: str) -> str:
        return people.mention(identity, self.channel)

    def said(self, event: ev.UserMessage) -> dict[str, Any]:
        """A person's message, with where they were (`context`) as attributes beside who they are."""
        return _tag("user_message", event.text, **{**event.context, "sender": self.person(event.actor)})

    def words(self, text: str) -> str:
        """Core's text for people (errors, notices) with its identity and time markers as names."""
        return people.render(text, self.person, people.plain_time)

    @property
    def messages(self) -> list[Message]:
        return self.turns[-1]

    def flush(self) -> None:
        if self.user_blocks:
            self.messages.append({"role": "user", "content": self.user_blocks})
            self.user_blocks = []

    def result(self, content: str, is_error: bool = False) -> None:
        if self.open_call is None:
            self.user_blocks.append(_tag("error" if is_error else "note", content))
            return
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": self.open_call.call_id, "content": content}
        if is_error:
            block["is_error"] = True
        self.user_blocks.insert(0, block)
        self.open_call = None

    def foreign_outcome(self, call_id: str, outcome: str, is_error: bool = False, kind: str = "") -> bool:
        """Render the held call of a tool this agent does not have, with its outcome; False if it is not held."""
        call = self.foreign
        if call is None or call.call_id != call_id:
            return False
        self.foreign = None
        if kind == "invalid":  # a call no agent could make: the model's mistake, shown with the error
            self.user_blocks.append(_tag("invalid_tool_call", json.dumps(call.args), tool=call.tool))
            self.user_blocks.append(_tag("error", outcome))
            return True
        body = f"{json.dumps(call.args, sort_keys=True)}\n{'error' if is_error else 'result'}: {outcome}"
        self.user_blocks.append(_tag("earlier_call", body, tool=call.tool, agent=self.agent))
        return True

    def close_foreign(self) -> None:
        """A held call that never got an outcome (it awaits approval, or was interrupted)."""
        if (call := self.foreign) is not None:
            self.foreign = None
            self.user_blocks.append(
                _tag("earlier_call", json.dumps(call.args, sort_keys=True), tool=call.tool, agent=self.agent)
            )

    def hand_off(self, event: ev.HandedOff) -> None:
        if self.foreign is not None and self.foreign.call_id == event.call_id:
            self.foreign = None  # the hand_to call of an earlier agent: the block below says it all
        elif self.open_call is not None and self.open_call.call_id == event.call_id:
            self.result(f"handed to {event.to_agent}")
        self.user_blocks.append(_tag("handed_off", event.note, **{"from": event.from_agent, "to": event.to_agent}))
        self.agent = event.to_agent

    def add(self, event: ev.Event) -> None:  # noqa: C901 - one flat case per event type
        match event:
            case ev.ThreadStarted():
                self.agent = event.agent
                self.channel = event.channel
            case ev.HandedOff():
                self.hand_off(event)
            case ev.UserMessage() if self.open_call is not None:
                # Written while the call awaited approval: it follows the call's result, which comes first.
                self.user_blocks.append(self.said(event))
            case ev.UserMessage():
                self.close_foreign()
                self.flush()
                self.turns.append([])
                self.user_blocks.append(self.said(event))
            case ev.ToolCall() if event.tool in self.known:
                self.close_dangling()
                self.flush()
                content: list[dict[str, Any]] = [{"type": "text", "text": event.reason}] if event.reason else []
                content.append({"type": "tool_use", "id": event.call_id, "name": event.tool, "input": event.args})
                self.messages.append({"role": "assistant", "content": content})
                self.open_call = event
            case ev.ToolCall():
                self.close_foreign()
                self.foreign = event  # rendered with its outcome: an earlier agent's call, or an invalid one
            case ev.ToolResult() if self.foreign_outcome(event.call_id, event.output):
                pass
            case ev.ToolResult():
                self.result(event.output)
            case ev.ToolErrorEvent() if self.foreign_outcome(event.call_id, self.words(event.error), True, event.kind):
                pass
            case ev.ToolErrorEvent():
                self.result(self.words(event.error), is_error=True)
            case ev.ApprovalRequested():
                approvers = ", ".join(map(self.person, event.approvers))
                self.user_blocks.append(
                    _tag("approval_requested", f"waiting for one of: {approvers}", id=event.approval_id)
                )
            case ev.ArgumentsEdited():
                # The model asked for `before`: it is told what an approver changed, and what runs instead.
                body = f"{event.changes}; the call runs with {json.dumps(event.after, sort_keys=True)}"
                self.user_blocks.append(_tag("arguments_edited", body, by=self.person(event.by), tool=event.tool))
            case ev.ApprovalDecided():
                self.user_blocks.append(
                    _tag("approval_decided", event.comment, decision=event.decision, by=self.person(event.actor))
                )
            case ev.HumanAnswer() if self.open_call is not None and self.open_call.tool == "ask_human":
                chose = f" (chose the option {event.choice!r})" if event.choice and event.choice != event.text else ""
                self.result(f"answer from {self.person(event.actor)}{chose}: {event.text}")
            case ev.HumanAnswer():
                self.user_blocks.append(_tag("human_answer", event.text, sender=self.person(event.actor)))
            case ev.AgentReply():
                self.result("delivered to the requester")
            case ev.Escalated():
                self.user_blocks.append(_tag("escalated", self.words(event.reason)))
            case ev.Failed():
                self.user_blocks.append(_tag("error", self.words(event.error)))
            case ev.DeliveryFailed():
                note = f"the {event.outbound_kind} could not be delivered on {event.channel}: {event.error}"
                self.user_blocks.append(_tag("delivery_failed", note))
            case _:
                pass  # model_call, tool_started, human_question, paused, resumed

    def close_dangling(self) -> None:
        self.close_foreign()
        if self.open_call is not None:  # a call that never got an outcome (should not happen; keep the API happy)
            self.result("no result was recorded for this call", is_error=True)


def _size(messages: Iterable[Message]) -> int:
    return sum(len(json.dumps(message)) for message in messages) // CHARS_PER_TOKEN


def _shorten(text: str, note: str) -> str:
    if len(text) <= SUMMARY_CHARS:
        return text
    return f"{text[:SUMMARY_CHARS]}\n[{note}: {len(text) - SUMMARY_CHARS} more characters summarised away]"


def _summarise_old_results(turns: list[list[Message]]) -> None:
    """Shorten all but the most recent tool results; mark errors that a later success resolved."""
    blocks = [
        b for turn in turns for m in turn if m["role"] == "user" for b in m["content"] if b["type"] == "tool_result"
    ]
    for block in blocks[:-RECENT_RESULTS_KEPT]:
        if isinstance(block["content"], str):
            if block.get("is_error"):
                block["content"] = "(resolved since) " + block["content"].splitlines()[0][:200]
            else:
                block["content"] = _shorten(block["content"], "old output")


def _fold(dropped: list[list[Message]]) -> dict[str, Any]:
    tools: Counter[str] = Counter()
    users = errors = 0
    for turn in dropped:
        for message in turn:
            for block in message["content"]:
                if block["type"] == "tool_use":
                    tools[block["name"]] += 1
                elif block["type"] == "tool_result" and block.get("is_error"):
                    errors += 1
                elif block["type"] == "text" and block["text"].startswith("<user_message"):
                    users += 1
    calls = ", ".join(f"{name} x{count}" for name, count in tools.most_common()) or "none"
    text = f"{len(dropped)} earlier turns folded: {users} user messages, tool calls: {calls}; {errors} errors."
    return _tag("summary", text)


def _alternating(messages: Iterable[Message]) -> list[Message]:
    """Merge consecutive messages of one role; a user message's tool results stay ahead of its other blocks."""
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            content = [*merged[-1]["content"], *message["content"]]
            merged[-1] = {"role": message["role"], "content": content}
        else:
            merged.append(message)
    for message in merged:
        if message["role"] == "user":  # sorted is stable: the results in call order, then the rest as written
            message["content"] = sorted(message["content"], key=lambda block: block["type"] != "tool_result")
    return merged


def render(events: Iterable[ev.Event], known_tools: set[str], budget_tokens: int) -> list[Message]:
    """Messages for the Anthropic API: starting with a user turn, ending with one, within budget."""
    builder = _Builder(known_tools)
    for event in events:
        builder.add(event)
    builder.close_dangling()
    builder.flush()
    turns = [turn for turn in builder.turns if turn]
    if _size(m for turn in turns for m in turn) > budget_tokens:
        _summarise_old_results(turns)
    dropped: list[list[Message]] = []
    if _size(m for turn in turns for m in turn) > budget_tokens:
        while len(turns) > 1 and _size(m for turn in turns for m in turn) > budget_tokens - SUMMARY_RESERVE:
            dropped.append(turns.pop(0))
    messages = [m for turn in turns for m in turn]
    if dropped:
        summary = _fold(dropped)
        if messages and messages[0]["role"] == "user":
            messages[0] = {"role": "user", "content": [summary, *messages[0]["content"]]}
        else:
            messages.insert(0, {"role": "user", "content": [summary]})
    if not messages or messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": [_tag("note", "the thread starts here")]})
    return _alternating(messages)
