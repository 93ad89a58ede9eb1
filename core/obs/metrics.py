"""Prometheus metrics, derived from the events a worker commits and the triggers it takes.

One `Metrics` per process, with its own registry (built in `bot/`, passed down), so tests
can read exact values and nothing is global.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from core.domain import events as ev


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.triggers = Counter("bot_triggers", "Triggers taken from the inbox", ["kind", "channel"], registry=r)
        self.steps = Counter("bot_agent_steps", "Tool calls the agent decided on", ["agent"], registry=r)
        self.tool_calls = Counter("bot_tool_calls", "Tool call outcomes", ["tool", "status"], registry=r)
        self.model_calls = Counter("bot_model_calls", "Model calls", ["model"], registry=r)
        self.model_tokens = Counter("bot_model_tokens", "Model tokens", ["model", "kind"], registry=r)
        self.model_latency = Histogram(
            "bot_model_latency_seconds",
            "Model call latency",
            ["model"],
            registry=r,
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
        )
        self.approvals = Counter("bot_approvals", "Approvals requested and decided", ["outcome"], registry=r)
        self.retries = Counter("bot_retries", "Work retried", ["reason"], registry=r)
        self.rate_limited = Counter(
            "bot_rate_limited", "Requests and model calls refused by a rate limit, by limit", ["limit"], registry=r
        )
        self.dead_letters = Counter("bot_dead_letters", "Triggers parked on the dead-letter stream", registry=r)
        self.undelivered = Counter(
            "bot_deliveries_failed",
            "Outbound messages a channel gave up on (recorded in their thread)",
            ["channel"],
            registry=r,
        )

    def observe(self, agent: str, events: Iterable[ev.Event]) -> None:
        """Count what the committed events say happened."""
        for event in events:
            match event:
                case ev.ToolCall():
                    self.steps.labels(agent or "-").inc()
                case ev.ToolResult():
                    self.tool_calls.labels(event.tool, "ok").inc()
                case ev.ToolErrorEvent():
                    self.tool_calls.labels(event.tool or "-", event.kind).inc()
                case ev.ModelCall():
                    self.model_calls.labels(event.model).inc()
                    self.model_latency.labels(event.model).observe(event.latency_ms / 1000)
                    for kind, count in (
                        ("input", event.input_tokens),
                        ("output", event.output_tokens),
                        ("cache_read", event.cache_read_tokens),
                        ("cache_write", event.cache_write_tokens),
                    ):
                        self.model_tokens.labels(event.model, kind).inc(count)
                case ev.ApprovalRequested():
                    self.approvals.labels("requested").inc()
                case ev.DeliveryFailed():
                    self.undelivered.labels(event.channel).inc()
                case ev.ApprovalDecided():
                    self.approvals.labels(
                        {"approve": "approved", "reject": "rejected"}.get(event.decision, "expired")
                    ).inc()
