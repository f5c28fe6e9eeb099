"""The Postgres trace store: finished spans, batched by the SDK's BatchSpanProcessor,
written to gm_spans; read back as a run's trace by RunService.GetRunTrace.

The exporter runs on the SDK's export thread with its own short-lived connection, so a
slow or absent database never blocks a request; a failed batch is dropped (logged), as
any OpenTelemetry exporter drops on failure, and never fails a run.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import psycopg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from graphmesh.store.spans import insert_spans, trace_rows

log = logging.getLogger(__name__)


def _row(span: ReadableSpan) -> tuple[Any, ...]:
    ctx = span.get_span_context()
    attrs = {k: v if isinstance(v, (str, int, float, bool)) else list(v) for k, v in (span.attributes or {}).items()}
    status = span.status.status_code
    return (
        f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}",
        f"{span.parent.span_id:016x}" if span.parent is not None else "",
        span.name, str(span.resource.attributes.get("service.name", "")), span.kind.name,
        span.start_time, span.end_time,
        "ERROR" if status is StatusCode.ERROR else ("OK" if status is StatusCode.OK else "UNSET"),
        span.status.description or "", json.dumps(attrs), attrs.get("graphmesh.run_id") or None,
    )


class PostgresSpanExporter(SpanExporter):
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [_row(s) for s in spans]
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            insert_spans(self._conn, rows)
            return SpanExportResult.SUCCESS
        except Exception as exc:
            log.warning("dropped %d spans: the trace store is unreachable: %s", len(rows), exc)
            self._close()
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


async def trace_spans(conn: psycopg.AsyncConnection, trace_id: str) -> list[dict[str, Any]]:
    """A trace's spans in tree order (each parent before its children, siblings by start),
    with their depth in the tree."""
    rows = await trace_rows(conn, trace_id)
    ids = {r["span_id"] for r in rows}
    children: dict[str, list[dict]] = {}
    for r in rows:
        # A span whose parent is not stored (e.g. the caller's own client span) is a root here.
        children.setdefault(r["parent_span_id"] if r["parent_span_id"] in ids else "", []).append(r)
    ordered: list[dict[str, Any]] = []

    def walk(parent: str, depth: int) -> None:
        for r in children.get(parent, []):
            ordered.append({**r, "depth": depth})
            walk(r["span_id"], depth + 1)

    walk("", 0)
    return ordered
