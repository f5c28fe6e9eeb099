"""NATS JetStream: the work queue, per-run event logs and approval events."""

from graphmesh.bus.connection import connect_nats, require_connected
from graphmesh.bus.events import (
    last_sequence,
    make_event,
    publish_event,
    publish_event_pipelined,
    read_events,
    status_event,
)
from graphmesh.bus.jobs import parse_job, publish_job
from graphmesh.bus.streams import ensure_streams

__all__ = [
    "connect_nats",
    "ensure_streams",
    "last_sequence",
    "make_event",
    "parse_job",
    "publish_event",
    "publish_event_pipelined",
    "publish_job",
    "read_events",
    "require_connected",
    "status_event",
]
