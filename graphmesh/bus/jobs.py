"""Run jobs on the GM_RUNS work queue."""

from __future__ import annotations

from nats.js import JetStreamContext

from graphmesh.bus.streams import run_subject
from graphmesh.store.records import RunRecord
from graphmesh.v1 import run_pb2


def job_message_id(run_id: str, attempt: int, suffix: str = "") -> str:
    """JetStream deduplicates on this header within the stream's duplicate window."""
    return f"{run_id}:{attempt}{':' + suffix if suffix else ''}"


async def publish_job(js: JetStreamContext, run: RunRecord, *, dedup_suffix: str = "") -> None:
    job = run_pb2.RunJob(
        run_id=run.run_id,
        attempt=run.attempt,
        graph=run.graph,
        graph_version=run.versions["graph_version"],
    )
    await js.publish(
        run_subject(run.graph, run.versions["graph_version"]),
        job.SerializeToString(),
        headers={"Nats-Msg-Id": job_message_id(run.run_id, run.attempt, dedup_suffix)},
    )


def parse_job(data: bytes) -> run_pb2.RunJob:
    job = run_pb2.RunJob()
    job.ParseFromString(data)
    return job
