"""Metrics come from what the workers commit; logs carry the thread's context and never secrets."""

from __future__ import annotations

import json
import logging

from prometheus_client import generate_latest

from core.domain import events as ev
from core.obs import logs
from core.tools.redact import RedactingFilter, Redactor
from tests.conftest import APPROVER


async def test_metrics_count_triggers_steps_tools_and_approvals(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await h.say("/status api staging")
    await h.say("/deploy api 1.4.2 production")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"reject {approval.approval_id} not now", sender=APPROVER)
    text = generate_latest(h.wiring.metrics.registry).decode()
    assert 'bot_triggers_total{channel="cli",kind="message"} 3.0' in text
    assert 'bot_tool_calls_total{status="ok",tool="status"} 1.0' in text
    assert 'bot_tool_calls_total{status="rejected",tool="deploy"} 1.0' in text
    assert 'bot_approvals_total{outcome="requested"} 1.0' in text
    assert 'bot_approvals_total{outcome="rejected"} 1.0' in text


def test_json_logs_carry_the_bound_context_and_redact_secrets() -> None:
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Capture()
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(RedactingFilter(Redactor({"SLACK_BOT_TOKEN": "xoxb-secret-123"})))
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test.observability")
    logger.addHandler(handler)
    try:
        logs.clear()
        logs.bind(thread_id="t123", channel="slack", agent="deploybot")
        logger.warning("posting with %s failed", "xoxb-secret-123")
    finally:
        logger.removeHandler(handler)
        logs.clear()
    line = json.loads(records[0])
    assert line["thread_id"] == "t123" and line["channel"] == "slack" and line["agent"] == "deploybot"
    assert line["msg"] == "posting with [redacted:SLACK_BOT_TOKEN] failed" and line["level"] == "warning"
