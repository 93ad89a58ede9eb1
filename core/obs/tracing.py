"""Traces (OpenTelemetry), off unless configured: one trace per trigger, across processes.

Tracing is on when the process is told where to send spans, by the standard variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER`
naming an exporter other than `none`), and the `otel` extra is installed. The SDK reads every other
`OTEL_*` variable itself (sampler, headers, batch sizes); the service name defaults to `opsbot`.

Off, every call here is a no-op that costs a global lookup, and opentelemetry is never imported:
the CLI's start-up time matters, and most installs never trace. The publisher's context rides in
the trigger (`inject` -> `Trigger.trace` -> `span(parent=...)`), so a worker's spans join the trace
of whoever published it. Errors mark a span with the exception's type only: messages can hold tool
output or secrets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, Self, cast

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

SERVICE_NAME = "opsbot"
SCOPE = "opsbot"

Attribute = str | bool | int | float | Sequence[str]
Kind = Literal["internal", "server", "client", "producer", "consumer"]


class Span(Protocol):
    """What callers may do with the span they are in (an OpenTelemetry span satisfies it)."""

    def set_attribute(self, key: str, value: Attribute) -> None: ...

    def is_recording(self) -> bool: ...


class _NoSpan:
    """The span of a process that does not trace: accepts everything, records nothing."""

    def set_attribute(self, key: str, value: Attribute) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()
# Process-wide, like OpenTelemetry's own provider: set once by `configure` (or `using`, in tests).
_tracer: Tracer | None = None
_configured = False


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(env)
    if exporters:
        return any(name != "none" for name in exporters)
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporters(env: Mapping[str, str]) -> list[str]:
    return [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]


def configure(env: Mapping[str, str]) -> bool:
    """Turn tracing on if `env` asks for it and the packages are there; once per process. True: on."""
    global _configured
    if _configured:
        return _tracer is not None
    _configured = True
    if not wanted(env):
        return False
    try:
        provider = _provider(env)
    except ImportError as exc:
        log.warning("OTEL_* asks for traces but %s; install the `otel` extra (pip install 'opsbot[otel]')", exc)
        return False
    from opentelemetry import trace

    trace.set_tracer_provider(provider)  # so any library instrumentation joins the same traces
    _install(provider)
    service = provider.resource.attributes.get("service.name")
    log.info("tracing on: service %s, exporters %s", service, ", ".join(_exporters(env)) or "otlp")
    return True


def _provider(env: Mapping[str, str]) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER and its argument
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    if protocol.strip().lower() == "grpc":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=grpc: spans go out as OTLP over HTTP; use the collector's port 4318")
    for name in _exporters(env) or ["otlp"]:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, ...
        elif name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "none":
            continue
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s: not supported here; use otlp (HTTP) or console", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    return provider


def _install(provider: TracerProvider) -> None:
    global _tracer
    _tracer = provider.get_tracer(SCOPE)


@contextlib.contextmanager
def using(provider: TracerProvider) -> Iterator[None]:
    """Trace into `provider` for the block (tests: an in-memory exporter), then stop tracing."""
    global _tracer
    previous = _tracer
    _install(provider)
    try:
        yield
    finally:
        _tracer = previous


def on() -> bool:
    """Whether this process traces: check it before building attributes for a span."""
    return _tracer is not None


def span(
    name: str,
    attributes: Mapping[str, Attribute] | None = None,
    *,
    kind: Kind = "internal",
    parent: Mapping[str, str] | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """A span around the block, a child of the current one, or of `parent` (a carrier from `inject`)."""
    if _tracer is None:
        return _NO_SPAN
    return _recording(_tracer, name, attributes, kind, parent)


@contextlib.contextmanager
def _recording(
    tracer: Tracer, name: str, attributes: Mapping[str, Attribute] | None, kind: Kind, parent: Mapping[str, str] | None
) -> Iterator[Span]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    context = propagate.extract(parent) if parent else None
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=SpanKind[kind.upper()],
        attributes=attributes,
        record_exception=False,  # the message and stack can hold tool output or secrets
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as exc:
            fail(current, type(exc).__name__)
            raise


def fail(span: Span, error_type: str) -> None:
    """Mark the span failed, naming only the kind of error (`error.type`), never its message."""
    if not span.is_recording():
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    cast("OtelSpan", span).set_status(Status(StatusCode.ERROR, error_type))


def inject() -> dict[str, str]:
    """The current trace context as W3C `traceparent` / `tracestate` entries; empty when not tracing."""
    if _tracer is None:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def trace_id() -> str:
    """The current trace's id (32 hex digits), for log lines; empty when no span is active."""
    if _tracer is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
