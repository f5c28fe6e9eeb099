"""Structured logs: one JSON object a line, so log pipelines need no parsing rules.

Each line carries the run and thread it is about (while code runs inside `about_run`)
and the current trace id, so a log line leads to its trace and back.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from opentelemetry import trace

_run: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("graphmesh_run", default=None)


@contextmanager
def about_run(run_id: str, thread_id: str) -> Iterator[None]:
    """Log lines written inside carry this run and thread."""
    token = _run.set((run_id, thread_id))
    try:
        yield
    finally:
        _run.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (run := _run.get()) is not None:
            entry["run_id"], entry["thread_id"] = run
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"], entry["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        for key in ("run_id", "thread_id", "trace_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
