"""A run much longer than the queue's ack wait is kept alive by in-progress acks: it is
delivered once, executed once, and completes. Uses its own mesh with a short ack wait."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from graphmesh.bus import connect_nats
from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER
from graphmesh.client import api_client, worker_stub
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import COMPLETED, RUNNING, create_run, private_mesh, stream_events, thread_values, wait_for

ACK_WAIT_SECONDS = 1.0


@pytest.fixture(scope="module")
def short_ack_mesh():
    with private_mesh("longrun", extra_env={"GRAPHMESH_ACK_WAIT_SECONDS": str(ACK_WAIT_SECONDS),
                                            "GRAPHMESH_LEASE_SECONDS": "2"}) as mesh:
        yield mesh


async def _redeliveries(nats_url: str) -> tuple[int, int]:
    nc = await connect_nats(nats_url, name="test-consumer-info")
    try:
        info = await nc.jetstream().consumer_info(RUNS_STREAM, WORKER_CONSUMER)
        return info.num_redelivered, info.delivered.consumer_seq
    finally:
        await nc.close()


def test_long_run_is_delivered_once(short_ack_mesh):
    client = api_client(short_ack_mesh.api_address)
    # About five times the ack wait, spread over five nodes.
    run = create_run(client, "research_assistant", {"question": "durable runs", "delay_seconds": 5.0})
    events = stream_events(client, run.run_id)

    assert events[-1].status_changed.status == COMPLETED
    started = Counter(e.node_started.node for e in events if e.WhichOneof("kind") == "node_started")
    assert started == Counter({n: 1 for n in ["plan", "search", "rank", "summarize", "write_report"]})
    redelivered, delivered = asyncio.run(_redeliveries(short_ack_mesh.nats_url))
    assert delivered == 1, f"the job was delivered {delivered} times"
    assert redelivered == 0
    final = client.runs.GetRun(pb.GetRunRequest(run_id=run.run_id)).run
    assert final.attempt == 1 and final.status == COMPLETED


def test_killed_worker_run_resumes_from_its_checkpoint(short_ack_mesh):
    """SIGKILL the worker mid-run: the run is redelivered, re-executed under its own run id,
    and continues after its last checkpoint, so finished nodes do not run again."""
    client = api_client(short_ack_mesh.api_address)
    run = create_run(client, "research_assistant", {"question": "crash safety", "delay_seconds": 4.0})
    seen = []
    call = client.runs.StreamRun(pb.StreamRunRequest(run_id=run.run_id), timeout=60)
    for response in call:  # until the first node has finished
        seen.append(response.event)
        if response.event.WhichOneof("kind") == "node_finished":
            break
    call.cancel()
    # NodeFinished is published as the node returns; LangGraph saves the step's checkpoint
    # right after (in the background, while the next step starts). Kill once it is saved.
    wait_for(lambda: thread_values(client, run.thread_id).get("queries"), 30,
             message="the checkpoint after plan")
    holder = next(name for name, address in zip(["worker-1", "worker-2"], short_ack_mesh.worker_addresses)
                  if any(a.run_id == run.run_id for a in
                         worker_stub(address).GetWorkerStatus(wpb.GetWorkerStatusRequest()).active_runs))
    short_ack_mesh.stop_service(holder, kill=True)
    try:
        events = stream_events(client, run.run_id)
    finally:
        short_ack_mesh.start_service(holder)

    assert events[-1].status_changed.status == COMPLETED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    started = Counter(e.node_started.node for e in events if e.WhichOneof("kind") == "node_started")
    first_node = seen[-1].node_finished.node
    assert started[first_node] == 1, f"{first_node} ran again after the crash: {started}"
    assert set(started) == {"plan", "search", "rank", "summarize", "write_report"}
    running = [e for e in events if e.WhichOneof("kind") == "status_changed"
               and e.status_changed.status == RUNNING]
    assert len(running) == 2  # the first execution and the resumed one
