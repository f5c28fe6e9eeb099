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
from nats.js.errors import NotFoundError

RUNS_STREAM = "GM_RUNS"
EVENTS_STREAM = "GM_EVENTS"
APPROVALS_STREAM = "GM_APPROVALS"
WORKER_CONSUMER = "gm-workers"

RUN_SUBJECT_PREFIX = "gm.runs"
EVENT_SUBJECT_PREFIX = "gm.events"
APPROVAL_SUBJECT_PREFIX = "gm.approvals"

DAY = 24 * 3600


def run_subject(graph: str, graph_version: str) -> str:
    return f"{RUN_SUBJECT_PREFIX}.{_token(graph)}.{_token(graph_version)}"


def event_subject(run_id: str) -> str:
    return f"{EVENT_SUBJECT_PREFIX}.{run_id}"


def _token(value: str) -> str:
    # Subject tokens may not contain '.', '*', '>' or whitespace.
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value) or "_"


def stream_configs(*, events_max_age_seconds: float = 7 * DAY) -> list[StreamConfig]:
    return [
        # Work queue: a message is gone once a worker acks it.
        StreamConfig(
            name=RUNS_STREAM,
            subjects=[f"{RUN_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120,
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
        ),
    ]


def worker_consumer_config(*, ack_wait_seconds: float) -> ConsumerConfig:
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
    )


async def ensure_streams(js: JetStreamContext, *, ack_wait_seconds: float) -> None:
    """Creates or updates the streams and the shared worker consumer."""
    for config in stream_configs():
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    await js.add_consumer(RUNS_STREAM, worker_consumer_config(ack_wait_seconds=ack_wait_seconds))
