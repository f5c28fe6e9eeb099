"""Tracer set-up and trace-context helpers.

One run is one trace. Its root is the CreateRun (or InvokeRun) server span; the run
record keeps that span's W3C `traceparent`, and every job message carries a traceparent
header, so a worker's execution, an approval decision on the review service and the
resumed execution all join the run's trace, across processes and across the pause.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

from langgraph.errors import GraphBubbleUp
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from graphmesh.logs import about_run
from graphmesh.telemetry.metrics import NODE_DURATION

log = logging.getLogger(__name__)

tracer = trace.get_tracer("graphmesh")

# Span attributes are identifiers and small labels only: never state, input or secrets.
# Long values are cut, whatever a caller passes.
ATTRIBUTE_LIMIT = 256

__all__ = ["tracer", "setup_tracing", "traceparent", "context_from", "inject", "trace_id_of", "run_span",
           "SpanKind", "Link", "Status", "StatusCode"]


def setup_tracing(service: str, *, instance: str = "", enabled: bool, database_url: str | None,
                  trace_store: bool) -> None:
    """Installs the process's tracer provider: spans go to the Postgres trace store (the
    embedded default) and, when the standard OTEL_EXPORTER_OTLP_* variables name an
    endpoint, to that collector too. Disabled: the no-op provider (nothing recorded)."""
    if not enabled:
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"graphmesh-{service}", "service.namespace": "graphmesh",
                                  "service.instance.id": instance or f"{service}-{os.getpid()}"}),
        span_limits=SpanLimits(max_attribute_length=ATTRIBUTE_LIMIT, max_span_attributes=32),
    )
    if trace_store and database_url:
        from graphmesh.telemetry.span_store import PostgresSpanExporter

        provider.add_span_processor(BatchSpanProcessor(PostgresSpanExporter(database_url),
                                                       schedule_delay_millis=500))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads OTEL_* itself
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    """Flushes batched spans (called when a process stops)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def traceparent() -> str:
    """The current span's W3C traceparent ('' when nothing is being traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_from(headers: Mapping[str, str] | None, fallback: str = "") -> otel_context.Context | None:
    """The trace context a message or record carries (its traceparent header), else the
    fallback traceparent; None when neither has one."""
    value = (headers or {}).get("traceparent") or fallback
    if not value:
        return None
    return propagate.extract({"traceparent": value})


def inject(headers: dict[str, str], fallback: str = "") -> dict[str, str]:
    """Adds the current trace context to message headers; with a fallback traceparent,
    that one unless the current span belongs to the same trace (so a message about a run
    always joins the run's own trace, whoever sends it)."""
    current = trace.get_current_span().get_span_context()
    if fallback and (not current.is_valid or f"{current.trace_id:032x}" != trace_id_of(fallback)):
        headers["traceparent"] = fallback
    else:
        propagate.inject(headers)
    return headers


def trace_id_of(parent: str) -> str:
    """The trace id in a traceparent ('00-<trace id>-<span id>-<flags>')."""
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else ""


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


@contextmanager
def run_span(name: str, run, *, parent: otel_context.Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
             links: list[Link] | None = None, start_time: int | None = None, **attributes) -> Iterator[trace.Span]:
    """A span about one run, carrying its identifiers; parented on `parent`, else on the
    run's own trace when the current span is not already in it."""
    if parent is None and run.trace_context and current_trace_id() != trace_id_of(run.trace_context):
        parent = context_from(None, run.trace_context)
    attrs = {"graphmesh.run_id": run.run_id, "graphmesh.thread_id": run.thread_id, "graphmesh.graph": run.graph,
             "graphmesh.graph_version": run.versions.get("graph_version", ""),
             "graphmesh.attempt": run.attempt, **attributes}
    with tracer.start_as_current_span(name, context=parent, kind=kind, links=links, attributes=attrs,
                                      start_time=start_time) as span, about_run(run.run_id, run.thread_id):
        yield span


@contextmanager
def node_span(graph: str, node: str, config: Mapping | None) -> Iterator[None]:
    """A span (and a duration sample) for one execution of a graph node. An interrupt is
    not an error: it is marked `graphmesh.interrupted` and the span stays unset."""
    meta = (config or {}).get("metadata") or {}
    attrs = {"graphmesh.graph": graph, "graphmesh.node": node,
             "graphmesh.graph_version": str(meta.get("graph_version", "")),
             "graphmesh.run_id": str(meta.get("gm_run_id", "")),
             "graphmesh.thread_id": str(((config or {}).get("configurable") or {}).get("thread_id", "")),
             "graphmesh.attempt": int(meta.get("gm_attempt", 0) or 0),
             "graphmesh.step": int(meta.get("langgraph_step", 0) or 0)}
    started = time.perf_counter()
    with tracer.start_as_current_span(f"node {node}", attributes=attrs, record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            yield
        except GraphBubbleUp:
            span.set_attribute("graphmesh.interrupted", True)
            raise
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
            span.set_attribute("graphmesh.error_type", type(exc).__name__)
            raise
        finally:
            NODE_DURATION.record(time.perf_counter() - started, {"graph": graph, "node": node,
                                                                 "graph_version": attrs["graphmesh.graph_version"]})
