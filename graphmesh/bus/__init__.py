"""NATS JetStream: the work queue, per-run event logs and approval events."""

from graphmesh.bus.connection import connect_nats, require_connected
from graphmesh.bus.events import (
    last_sequence,
    make_event,
    publish_event,
    publish_event_pipelined,
    status_event,
)
from graphmesh.bus.hub import EventHub
from graphmesh.bus.jobs import dispatch_queued, parse_job, publish_job, queue_frontier
from graphmesh.bus.streams import ensure_streams

__all__ = [
    "EventHub",
    "connect_nats",
    "dispatch_queued",
    "ensure_streams",
    "last_sequence",
    "make_event",
    "parse_job",
    "publish_event",
    "publish_event_pipelined",
    "publish_job",
    "queue_frontier",
    "require_connected",
    "status_event",
]
