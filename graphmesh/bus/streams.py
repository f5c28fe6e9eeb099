"""JetStream layout: stream names, subjects, and their idempotent creation."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from graphmesh.errors import Unavailable
from graphmesh.loops import retry_for

RUNS_STREAM = "GM_RUNS"
EVENTS_STREAM = "GM_EVENTS"
APPROVALS_STREAM = "GM_APPROVALS"
WORKER_CONSUMER = "gm-workers"

RUN_SUBJECT_PREFIX = "gm.runs"
EVENT_SUBJECT_PREFIX = "gm.events"
APPROVAL_SUBJECT_PREFIX = "gm.approvals"

DAY = 24 * 3600
# JetStream's error code: "consumer config replica count exceeds parent stream".
CONSUMER_REPLICAS_EXCEED_STREAM = 10126


def run_subject(graph: str, graph_version: str) -> str:
    return f"{RUN_SUBJECT_PREFIX}.{_token(graph)}.{_token(graph_version)}"


def event_subject(run_id: str) -> str:
    return f"{EVENT_SUBJECT_PREFIX}.{run_id}"


def _token(value: str) -> str:
    # Subject tokens may not contain '.', '*', '>' or whitespace.
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value) or "_"


def stream_configs(*, replicas: int = 1, events_max_age_seconds: float = 7 * DAY) -> list[StreamConfig]:
    """`replicas`: copies of each stream in a NATS cluster (1 for one server; 3 so that a
    cluster loses nothing when a server dies). Consumers inherit their stream's."""
    return [
        # Work queue: a message is gone once a worker acks it.
        StreamConfig(
            name=RUNS_STREAM,
            subjects=[f"{RUN_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120,
            num_replicas=replicas,
        ),
        # Per-run event logs, replayable by StreamRun from any sequence.
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENT_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=events_max_age_seconds,
            discard=DiscardPolicy.OLD,
            duplicate_window=120,
            num_replicas=replicas,
            # StreamRun replays with direct gets by subject.
            allow_direct=True,
        ),
        StreamConfig(
            name=APPROVALS_STREAM,
            subjects=[f"{APPROVAL_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * DAY,
            duplicate_window=120,
            num_replicas=replicas,
        ),
    ]


def worker_consumer_config(*, ack_wait_seconds: float, replicas: int = 1) -> ConsumerConfig:
    """`replicas` as its stream's, set explicitly: a consumer left to inherit keeps the count
    it was created with when the stream is scaled later, and an R1 consumer on a dead server
    stops every worker (fetches answer "no responders") although its stream lives on."""
    return ConsumerConfig(
        durable_name=WORKER_CONSUMER,
        filter_subject=f"{RUN_SUBJECT_PREFIX}.>",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_seconds,
        # Unlimited here: the workers bound redelivery themselves. A run that keeps crashing
        # its worker is a dead letter after Settings.max_deliveries claims (counted in
        # Postgres); a message that keeps failing before its claim is terminated (term) after
        # Settings.max_job_failures deliveries, logged and counted. A finite max_deliver
        # would also drop jobs that were only waiting (a held lease, a version no live
        # worker loads yet), silently.
        max_deliver=-1,
        max_ack_pending=10_000,
        num_replicas=replicas,
    )


async def ensure_streams(js: JetStreamContext, *, ack_wait_seconds: float, replicas: int = 1,
                         settle_seconds: float = 60.0) -> None:
    """Creates or updates the streams (a changed replica count is applied: NATS moves the
    stream to more or fewer servers) and the shared worker consumer, with as many replicas."""
    for config in stream_configs(replicas=replicas):
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    # A stream scaled up gains its peers over a moment (longer while an earlier change
    # settles); until then NATS refuses a consumer with more replicas than it has placed.
    consumer = worker_consumer_config(ack_wait_seconds=ack_wait_seconds, replicas=replicas)
    try:
        await retry_for(lambda: js.add_consumer(RUNS_STREAM, consumer), seconds=settle_seconds,
                        retry_on=_stream_not_placed_yet)
    except BadRequestError as exc:
        if not _stream_not_placed_yet(exc):
            raise
        raise Unavailable(f"stream {RUNS_STREAM} has not placed its {replicas} replicas after {settle_seconds:g} s "
                          "(NATS is still moving it, or the cluster has fewer servers); run `graphmesh migrate` "
                          "again once `nats stream info` shows them", code="STREAM_NOT_PLACED") from exc


def _stream_not_placed_yet(exc: Exception) -> bool:
    return isinstance(exc, BadRequestError) and exc.err_code == CONSUMER_REPLICAS_EXCEED_STREAM
