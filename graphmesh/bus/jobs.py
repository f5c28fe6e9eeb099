"""Run jobs on the GM_RUNS work queue."""

from __future__ import annotations

import logging
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from graphmesh.bus.events import publish_event, status_event
from graphmesh.bus.streams import RUN_SUBJECT_PREFIX, RUNS_STREAM, WORKER_CONSUMER, run_subject
from graphmesh.store.records import RunRecord
from graphmesh.store.statuses import RunStatus
from graphmesh.telemetry.tracing import inject
from graphmesh.v1 import run_pb2

log = logging.getLogger(__name__)


def job_message_id(run_id: str, attempt: int, suffix: str = "") -> str:
    """JetStream deduplicates on this header within the stream's duplicate window."""
    return f"{run_id}:{attempt}{':' + suffix if suffix else ''}"


async def publish_job(js: JetStreamContext, run: RunRecord, *, dedup_suffix: str = "", due: bool = False) -> None:
    """Dispatches a run. The message id is (run, attempt, the event sequence of the QUEUED
    status it was dispatched at), so the same dispatch sent twice is stored once while a
    later dispatch of the same run (a resume after approval) is a new message. A delayed
    run before its time is not published (its job would only wait, unclaimable, in a
    worker's hands and in the queue's lag): it is published when due (lifecycle.py, and the
    reconciler for any that nobody published). `due`: the caller knows the run is due,
    whatever this host's clock says."""
    if not due and run.not_due():
        log.debug("run %s is due at %s; its job waits for then", run.run_id, run.run_after)
        return
    job = run_pb2.RunJob(
        run_id=run.run_id,
        attempt=run.attempt,
        graph=run.graph,
        graph_version=run.versions["graph_version"],
    )
    await js.publish(
        run_subject(run.graph, run.versions["graph_version"]),
        job.SerializeToString(),
        # The trace context rides along, so the execution joins the run's trace.
        headers=inject({"Nats-Msg-Id": job_message_id(run.run_id, run.attempt, dedup_suffix or f"q{run.event_seq}")},
                       fallback=run.trace_context),
    )


def parse_job(data: bytes) -> run_pb2.RunJob:
    job = run_pb2.RunJob()
    job.ParseFromString(data)
    return job


async def dispatch_queued(js: JetStreamContext, run: RunRecord, previous: RunStatus) -> None:
    """Announces a run that was just queued again (retry, resume, decision, hand-back) and
    publishes its job. The job goes out even if the event cannot: a stream steps over a
    lost event, while a lost job would wait for the reconciler."""
    try:
        await publish_event(js, status_event(run.run_id, run.event_seq, RunStatus.QUEUED, previous))
    except Exception as exc:
        log.warning("run %s queued; its QUEUED event was not published: %s", run.run_id, exc)
    await publish_job(js, run)


async def queue_frontier(js: JetStreamContext) -> datetime | None:
    """When the oldest job message not yet handed to any worker was published; None when
    the workers have been handed every job (no backlog). A run dispatched after this is
    still waiting in the queue, however long ago that was."""
    info = await js.consumer_info(RUNS_STREAM, WORKER_CONSUMER)
    if not info.num_pending:
        return None
    try:
        msg = await js.get_msg(RUNS_STREAM, seq=(info.delivered.stream_seq or 0) + 1,
                               subject=f"{RUN_SUBJECT_PREFIX}.>", next=True)
    except NotFoundError:  # delivered or deleted meanwhile
        return None
    return msg.time
