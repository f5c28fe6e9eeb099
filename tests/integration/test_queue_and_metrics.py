"""The work queue bounds a job message that keeps failing before its claim, and the
Prometheus metrics read in seconds and report idle gauges as 0 (issue 12). Shared mesh."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid

from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from graphmesh.bus import connect_nats
from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER, run_subject
from graphmesh.config import Settings
from graphmesh.v1 import run_pb2
from helpers import COMPLETED, create_run, wait_for, wait_status

WORKERS = ("worker-1", "worker-2")


async def _publish_job(nats_url: str, job: run_pb2.RunJob) -> int:
    nc = await connect_nats(nats_url, name="test-bad-job")
    try:
        ack = await nc.jetstream().publish(run_subject(job.graph, job.graph_version), job.SerializeToString(),
                                           headers={"Nats-Msg-Id": f"test-bad-job-{job.run_id}"})
        return ack.seq
    finally:
        await nc.close()


async def _queue_state(nats_url: str, seq: int) -> tuple[bool, int]:
    """Whether the stream still holds message `seq`, and the consumer's unacked count."""
    nc = await connect_nats(nats_url, name="test-bad-job-state")
    try:
        js = nc.jetstream()
        try:
            await js.get_msg(RUNS_STREAM, seq)
            stored = True
        except NotFoundError:
            stored = False
        info = await js.consumer_info(RUNS_STREAM, WORKER_CONSUMER)
        return stored, info.num_ack_pending
    finally:
        await nc.close()


def _delivery_lines(mesh, run_id: str) -> list[str]:
    lines = []
    for worker in WORKERS:
        lines += [line for line in mesh.log_path(worker).read_text().splitlines()
                  if run_id in line and "before claiming the run" in line]
    return lines


def test_a_job_failing_before_its_claim_is_delivered_a_bounded_number_of_times(mesh):
    # A job for a served graph whose run id is no run id: every delivery fails in the claim's
    # query (not a uuid). Before the fix it was nak'd and redelivered forever.
    run_id = f"not-a-run-{uuid.uuid4().hex}"
    limit = Settings().max_job_failures
    seq = asyncio.run(_publish_job(mesh.nats_url, run_pb2.RunJob(run_id=run_id, attempt=1, graph="tiny",
                                                                 graph_version="1")))
    assert asyncio.run(_queue_state(mesh.nats_url, seq))[0]

    # Terminated after `limit` deliveries: the work queue drops it.
    wait_for(lambda: not asyncio.run(_queue_state(mesh.nats_url, seq))[0], 90,
             interval=0.5, message=lambda: f"job {seq} to leave GM_RUNS; deliveries so far: "
                                           f"{len(_delivery_lines(mesh, run_id))}")
    # The two workers' logs are read one after the other: wait until every delivery is logged.
    lines = wait_for(lambda: (found := _delivery_lines(mesh, run_id)) and len(found) >= limit
                     and any("terminating" in ln for ln in found) and found, 60,
                     message="the terminating log line")
    deliveries = sorted(int(re.search(r"delivery (\d+)", line).group(1)) for line in lines)
    assert deliveries == list(range(1, limit + 1)), lines
    assert sum("terminating" in line for line in lines) == 1
    # The first failure carries its traceback; the reason names the error.
    assert "DataError" in "".join(lines) or "InvalidTextRepresentation" in "".join(lines), lines

    # ... and no longer: nothing more arrives and nothing is left unacked.
    time.sleep(6)
    assert len(_delivery_lines(mesh, run_id)) == limit
    assert asyncio.run(_queue_state(mesh.nats_url, seq)) == (False, 0)
    terminated = sum(total(scrape(mesh.metrics_url(w)), "graphmesh_jobs_terminated_total") for w in WORKERS)
    assert terminated >= 1


# -- metrics ------------------------------------------------------------------------------------


def scrape(url: str) -> list:
    assert url, "metrics are off"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def present(samples, name: str, **labels: str) -> list:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_seconds_histograms_have_sub_second_buckets(mesh, client):
    run = create_run(client, "tiny", {"text": "bucket boundaries"})
    wait_status(client, run.run_id, COMPLETED)
    for name in ("graphmesh_run_duration_seconds_bucket", "graphmesh_node_duration_seconds_bucket"):
        def bounds():
            return {float(s.labels["le"]) for w in WORKERS for s in present(scrape(mesh.metrics_url(w)), name)}
        found = wait_for(bounds, 30, message=f"{name} samples")
        # OpenTelemetry's defaults (0, 5, 10, 25, ... meant for milliseconds) have none of these.
        assert {0.01, 0.1, 0.25, 0.5, 1.0, 2.5} <= found, sorted(found)
        assert len([b for b in found if 0 < b < 1]) >= 5, sorted(found)


def test_queue_depth_and_active_runs_read_zero_when_idle(mesh, client):
    run = create_run(client, "tiny", {"text": "idle gauges"})
    wait_status(client, run.run_id, COMPLETED)
    url = mesh.metrics_url("api")

    def idle() -> bool:
        samples = scrape(url)
        depth = present(samples, "graphmesh_queue_depth", graph="tiny", graph_version="1")
        running = present(samples, "graphmesh_runs_active", graph="tiny", graph_version="1", status="running")
        return bool(depth and running) and [s.value for s in depth + running] == [0.0, 0.0]

    wait_for(idle, 30, interval=0.5, message="graphmesh_queue_depth and graphmesh_runs_active for tiny@1 at 0")
    samples = scrape(url)
    # Every graph version the workers load reads 0 too, with every in-flight status.
    for graph in ("approval_workflow", "research_assistant"):
        assert present(samples, "graphmesh_queue_depth", graph=graph), graph
        assert {s.labels["status"] for s in present(samples, "graphmesh_runs_active", graph=graph)} >= {
            "running", "waiting_for_approval", "paused"}, graph
