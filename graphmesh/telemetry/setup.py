"""One call per process: traces and metrics as the settings say."""

from __future__ import annotations

from graphmesh.config import Settings
from graphmesh.telemetry.metrics import setup_metrics
from graphmesh.telemetry.tracing import setup_tracing


def setup_telemetry(service: str, settings: Settings, *, instance: str = "") -> None:
    setup_tracing(service, instance=instance, enabled=settings.tracing, database_url=settings.database_url,
                  trace_store=settings.trace_store)
    setup_metrics(service, settings.metrics_listen)
