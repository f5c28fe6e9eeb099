"""Per-run event logs on the GM_EVENTS stream.

Sequence numbers are per run and gap-free: the run store hands out the number of each
status change, and the lease holder numbers the events in between. JetStream
deduplicates on run:sequence, so a re-sent event is stored once.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from graphmesh.bus.streams import EVENTS_STREAM, event_subject
from graphmesh.messages import error_to_proto, status_to_proto
from graphmesh.store.records import RunError
from graphmesh.store.statuses import RunStatus
from graphmesh.telemetry.tracing import current_trace_id
from graphmesh.v1 import run_pb2

SEQUENCE_HEADER = "Gm-Seq"


def make_event(run_id: str, sequence: int, *, trace_id: str | None = None, **kind) -> run_pb2.RunEvent:
    """An event stamped now, with the current trace id unless one is given."""
    trace_id = current_trace_id() if trace_id is None else trace_id
    event = run_pb2.RunEvent(run_id=run_id, sequence=sequence, trace_id=trace_id, **kind)
    event.time.GetCurrentTime()
    return event


def status_changed(status: RunStatus, previous: RunStatus | None = None,
                   error: RunError | None = None) -> run_pb2.StatusChanged:
    return run_pb2.StatusChanged(status=status_to_proto(status),
                                 previous_status=status_to_proto(previous) if previous else 0,
                                 error=error_to_proto(error))


def status_event(run_id: str, sequence: int, status: RunStatus, previous: RunStatus | None = None,
                 error: RunError | None = None) -> run_pb2.RunEvent:
    """The one way a status change becomes an event (live, or rebuilt from the record)."""
    return make_event(run_id, sequence, status_changed=status_changed(status, previous, error))


def _headers(event: run_pb2.RunEvent) -> dict[str, str]:
    return {"Nats-Msg-Id": f"{event.run_id}:{event.sequence}", SEQUENCE_HEADER: str(event.sequence)}


async def publish_event(js: JetStreamContext, event: run_pb2.RunEvent) -> None:
    """Publishes and waits for JetStream's acknowledgement."""
    await js.publish(event_subject(event.run_id), event.SerializeToString(), headers=_headers(event))


async def publish_event_pipelined(js: JetStreamContext, event: run_pb2.RunEvent) -> asyncio.Future:
    """Publishes without waiting; the returned future resolves to JetStream's ack. Lets a
    node's events go out back to back while the graph keeps running."""
    return await js.publish_async(event_subject(event.run_id), event.SerializeToString(), headers=_headers(event))


async def last_sequence(js: JetStreamContext, run_id: str) -> int:
    """The highest sequence stored for a run, 0 when it has none."""
    try:
        msg = await js.get_last_msg(EVENTS_STREAM, event_subject(run_id))
    except NotFoundError:
        return 0
    return int((msg.headers or {}).get(SEQUENCE_HEADER, "0"))
