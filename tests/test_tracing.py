"""Traces: one trace per trigger, from the publisher through the worker's model and tool calls; free when off."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack

import anthropic
import pytest
import redis.asyncio as aioredis

from core.runtime.delivery import deliver

pytest.importorskip("opentelemetry.sdk", reason="the `otel` extra is not installed")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from config import resources
from core.domain import events as ev
from core.model.anthropic import AnthropicModel
from core.model.prompts import PromptLibrary
from core.obs import tracing
from core.redis import keys
from core.redis.bus import Bus
from core.redis.store import Store
from tests.conftest import Harness
from tests.fake_anthropic import FakeAnthropic, Step, bad_request, make_usage, tool_use

MODEL = "claude-sonnet-4-6"
SECRET = "hunter2-in-the-error-message"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Everything traced during the test, kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.using(provider):
        yield exporter
    provider.shutdown()


@pytest.fixture
async def claude_bot(
    fake_redis: aioredis.Redis, make_harness
) -> AsyncIterator[Callable[[list[Step]], Awaitable[Harness]]]:
    """A harness whose model is the real `AnthropicModel` on the real SDK, aimed at a loopback fake API."""
    async with AsyncExitStack() as stack:

        async def factory(script: list[Step]) -> Harness:
            fake = await stack.enter_async_context(FakeAnthropic(script))
            client = await stack.enter_async_context(
                anthropic.AsyncAnthropic(api_key="test", base_url=fake.base_url, max_retries=0)
            )
            model = AnthropicModel(client, PromptLibrary(resources.prompts_dir()), model=MODEL, agent="deploybot")
            harness: Harness = make_harness(fake_redis, model)
            return harness

        yield factory


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_runs_from_the_publisher_through_the_worker_to_the_model_and_the_tool(
    claude_bot, spans: InMemorySpanExporter
) -> None:
    """The trace context rides in the trigger: the worker's span is the publisher's child, and the model
    call (GenAI attributes) and the tool run are the worker span's children."""
    usage = make_usage(120, 30, cache_read_input_tokens=100, cache_creation_input_tokens=20)
    status = {"service": "api", "environment": "staging"}
    h = await claude_bot(
        [tool_use("status", status, id="toolu_status_1", usage=usage), tool_use("reply", {"message": "api is up"})]
    )

    await h.say("what runs on staging?")

    [publish] = named(spans, "publish inbox")
    [trigger] = named(spans, "trigger message")
    chats = named(spans, f"chat {MODEL}")
    [tool] = named(spans, "execute_tool status")
    assert len(chats) == 2
    assert {span.context.trace_id for span in [publish, trigger, *chats, tool]} == {publish.context.trace_id}
    assert publish.parent is None and publish.kind is SpanKind.PRODUCER
    assert parent_of(trigger) == publish.context.span_id and trigger.kind is SpanKind.CONSUMER
    assert {parent_of(span) for span in [*chats, tool]} == {trigger.context.span_id}
    assert trigger.attributes is not None and trigger.attributes["bot.agent"] == "deploybot"
    assert trigger.attributes["bot.thread_id"] and trigger.attributes["bot.channel"] == "cli"

    chat = chats[0]
    assert chat.kind is SpanKind.CLIENT
    assert dict(chat.attributes or {}) | {"gen_ai.response.id": "-"} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.agent.name": "deploybot",
        "gen_ai.conversation.id": trigger.attributes["bot.thread_id"],
        "gen_ai.response.model": MODEL,
        "gen_ai.response.id": "-",
        "gen_ai.response.finish_reasons": ("tool_use",),
        "gen_ai.usage.input_tokens": 240,  # the conventions count cached input tokens in
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.usage.cache_creation.input_tokens": 20,
    }
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "status",
        "gen_ai.tool.call.id": "toolu_status_1",
        "gen_ai.tool.type": "function",
        "bot.outcome": "ok",
    }
    assert tool.status.status_code is StatusCode.UNSET


async def test_a_failed_model_call_marks_its_span_with_the_error_type_only(
    claude_bot, spans: InMemorySpanExporter
) -> None:
    """What the API said can hold anything (here a secret); the span names only the kind of error."""
    h = await claude_bot([bad_request(f"prompt is too long: {SECRET}")])

    await h.say("deploy everything")

    [chat] = named(spans, f"chat {MODEL}")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.status.description == "BadRequestError"
    assert chat.attributes is not None and chat.attributes["error.type"] == "BadRequestError"
    assert not chat.events, "no exception event: its message and stack could hold secrets"
    exported = json.dumps([json.loads(span.to_json()) for span in spans.get_finished_spans()])
    assert SECRET not in exported


async def test_a_failed_tool_marks_its_span_failed(fake_redis, make_harness, spans: InMemorySpanExporter) -> None:
    h = make_harness(fake_redis, DEPLOYCTL_FAIL_TESTS="api")

    await h.say("/run_tests api")

    [tool] = named(spans, "execute_tool run_tests")
    assert tool.attributes is not None and tool.attributes["bot.outcome"] == "failed"
    assert (tool.status.status_code, tool.status.description) == (StatusCode.ERROR, "ToolFailed")
    assert tool.attributes["error.type"] == "ToolFailed" and not tool.events


async def test_the_trace_rides_in_the_trigger_without_changing_its_id_or_dedup(
    fake_redis: aioredis.Redis, spans: InMemorySpanExporter
) -> None:
    bus = Bus(fake_redis, Store(fake_redis))
    trigger = ev.MessageTrigger(id="t1", channel="slack", conversation="c", sender="slack:U1", text="hi", dedup_key="k")

    assert await bus.publish(trigger)
    assert not await bus.publish(trigger.model_copy(update={"id": "t2"})), "a channel retry is still a duplicate"

    [(_, taken)] = await bus.take("w1", block_ms=0)
    assert taken.id == "t1" and taken.dedup_key == "k"
    assert set(taken.trace) == {"traceparent"}
    [first, _] = named(spans, "publish inbox")
    assert taken.trace["traceparent"].split("-")[1] == format(first.context.trace_id, "032x")


async def test_without_tracing_the_stored_trigger_has_no_trace_field(fake_redis: aioredis.Redis) -> None:
    """A worker that predates the field refuses unknown fields, and a trigger stored before it reads as before."""
    bus = Bus(fake_redis, Store(fake_redis))
    await bus.publish(ev.MessageTrigger(id="t1", channel="cli", conversation="c", sender="cli:a", text="hi"))

    [(_, fields)] = await fake_redis.xrange(keys.INBOX)
    assert "trace" not in json.loads(fields[b"t"])
    old = (
        '{"v": 1, "id": "t0", "channel": "cli", "conversation": "c", "sender": "cli:a", "kind": "message", "text": "x"}'
    )
    assert ev.TRIGGER_ADAPTER.validate_json(old).trace == {}


async def test_delivering_a_message_is_a_span(fake_redis: aioredis.Redis, spans: InMemorySpanExporter) -> None:
    bus = Bus(fake_redis, Store(fake_redis), claim_idle_ms=600)
    rendered = asyncio.Event()

    async def render(outbound: ev.Outbound) -> None:
        rendered.set()

    await bus.send(ev.Reply(id="o1", channel="slack", conversation="c", thread_id="t1", text="done"))
    stop = asyncio.Event()
    delivering = asyncio.create_task(deliver(bus, "slack", render, stop, consumer="r1"))
    await asyncio.wait_for(rendered.wait(), 10)
    stop.set()
    await delivering

    [span] = named(spans, "deliver reply")
    assert span.attributes is not None
    assert (span.attributes["bot.thread_id"], span.attributes["bot.outbound_id"]) == ("t1", "o1")
    assert span.attributes["bot.attempt"] == 1


def test_tracing_off_imports_no_opentelemetry() -> None:
    """Unconfigured, the seam and the log context cost nothing: not even an import (the CLI starts fast)."""
    code = """
import sys
from core.obs import logs, tracing
assert not tracing.configure({"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "x"})
with tracing.span("step", {"a": 1}) as span:
    span.set_attribute("b", 2)
assert tracing.inject() == {} and tracing.trace_id() == "" and not tracing.on()
loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
assert not loaded, loaded
"""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=30)


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "bot"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_standard_variables_ask(env: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(env) is wanted
