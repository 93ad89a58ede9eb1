"""JSON log lines name their trigger, thread, channel and agent; each step logs one line with its outcome."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from core.domain import events as ev
from core.domain.ids import thread_id_for
from core.obs import logs
from tests.conftest import APPROVER, ScriptedModel, call


class JsonLines(logging.Handler):
    """The handler `bot` installs for BOT_LOG_FORMAT=json (context filter, JSON formatter), kept in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(logs.ContextFilter())
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def steps(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["msg"].startswith("step done:")]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler, logger = JsonLines(), logging.getLogger("core")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_step_logs_one_line_with_its_context_outcome_and_duration(
    fake_redis, make_harness, json_lines: JsonLines
) -> None:
    h = make_harness(fake_redis)
    trigger = h.trigger("/status api staging")

    await h.wiring.bus.publish(trigger)
    await h.drain()

    step, answer = json_lines.steps()  # the command runs `status`, then replies with its output
    assert (answer["step"], answer["tool"], answer["outcome"]) == (2, "reply", "replied")
    assert step["level"] == "info" and step["logger"] == "core.runtime.loop"
    assert step["msg"].startswith("step done: tool=status outcome=ok ") and step["msg"].endswith(" ms")
    context = {name: step[name] for name in ("thread_id", "channel", "agent", "trigger_id")}
    assert context == {
        "thread_id": thread_id_for("cli", h.conversation),
        "channel": "cli",
        "agent": "deploybot",  # bound once the new thread's agent is known, not only on later triggers
        "trigger_id": trigger.id,
    }
    assert (step["step"], step["tool"], step["outcome"]) == (1, "status", "ok")
    assert isinstance(step["duration_ms"], float) and step["duration_ms"] >= 0


async def test_each_step_of_a_turn_logs_its_own_outcome(fake_redis, make_harness, json_lines: JsonLines) -> None:
    model = ScriptedModel(
        [call("status", service="nowhere", environment="staging"), call("reply", message="api is on 1.4.1")]
    )
    h = make_harness(fake_redis, model)

    await h.say("what runs on staging?")

    outcomes = [(line["step"], line["tool"], line["outcome"]) for line in json_lines.steps()]
    assert outcomes == [(1, "status", "invalid"), (2, "reply", "replied")]


async def test_the_context_ends_with_its_trigger(fake_redis, make_harness, json_lines: JsonLines) -> None:
    """A line logged after a trigger was handled does not carry that trigger's thread."""
    h = make_harness(fake_redis)
    await h.say("/status api staging")

    logging.getLogger("core.test").warning("between triggers")

    last = json_lines.lines[-1]
    assert last["msg"] == "between triggers"
    assert not {"thread_id", "channel", "agent", "trigger_id"} & set(last)


async def test_a_decided_approval_logs_the_step_it_ends(fake_redis, make_harness, json_lines: JsonLines) -> None:
    h = make_harness(fake_redis)
    await h.say("/restart api production")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"reject {approval.approval_id} not now", sender=APPROVER)

    outcomes = [(line["step"], line["tool"], line["outcome"]) for line in json_lines.steps()]
    assert outcomes[:2] == [(1, "restart", "approval_requested"), (1, "restart", "rejected")]


def test_json_lines_carry_the_trace_id_inside_a_span(json_lines: JsonLines) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the `otel` extra is not installed")
    from opentelemetry.sdk.trace import TracerProvider

    from core.obs import tracing

    with tracing.using(TracerProvider()), tracing.span("work"):
        trace_id = tracing.trace_id()
        logging.getLogger("core.test").warning("inside")
    logging.getLogger("core.test").warning("outside")

    inside, outside = json_lines.lines[-2:]
    assert len(trace_id) == 32 and inside["trace_id"] == trace_id
    assert "trace_id" not in outside
