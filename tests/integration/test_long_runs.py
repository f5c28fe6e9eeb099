"""A run much longer than the queue's ack wait is kept alive by in-progress acks: it is
delivered once, executed once, and completes. Uses its own mesh with a short ack wait."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from graphmesh.bus import connect_nats
from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb
from helpers import COMPLETED, create_run, private_mesh, stream_events

ACK_WAIT_SECONDS = 1.0


@pytest.fixture(scope="module")
def short_ack_mesh():
    with private_mesh("longrun", ack_wait_seconds=ACK_WAIT_SECONDS,
                      extra_env={"GRAPHMESH_LEASE_SECONDS": "2"}) as mesh:
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
