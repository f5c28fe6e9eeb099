"""The bus is a trigger, not the ledger: a lost job message does not lose its run, and a
duplicated one does not run it twice. Its own mesh, with a quick reconciler."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from graphmesh.bus import connect_nats, publish_job
from graphmesh.bus.streams import RUNS_STREAM
from graphmesh.client import api_client
from graphmesh.db import make_pool
from graphmesh.store import RunStore
from helpers import (
    COMPLETED,
    QUEUED,
    RUNNING,
    create_run,
    get_run,
    private_mesh,
    stream_events,
    wait_for,
    wait_status,
)


@pytest.fixture(scope="module")
def bus_mesh():
    with private_mesh("bus", workers=2, extra_env={"GRAPHMESH_RECONCILE_SECONDS": "1",
                                                   "GRAPHMESH_ORPHAN_QUIET_SECONDS": "2"}) as mesh:
        yield mesh


async def _purge_jobs(nats_url: str) -> int:
    nc = await connect_nats(nats_url, name="test-purge")
    try:
        js = nc.jetstream()
        before = (await js.stream_info(RUNS_STREAM)).state.messages
        await js.purge_stream(RUNS_STREAM)
        return before
    finally:
        await nc.close()


async def _queued_jobs(nats_url: str) -> int:
    nc = await connect_nats(nats_url, name="test-queue-depth")
    try:
        return (await nc.jetstream().stream_info(RUNS_STREAM)).state.messages
    finally:
        await nc.close()


async def _publish_again(database_url: str, nats_url: str, run_id: str, copies: int) -> None:
    pool = make_pool(database_url, max_size=2)
    await pool.open()
    nc = await connect_nats(nats_url, name="test-duplicate")
    try:
        run = await RunStore(pool).get_run(run_id)
        for i in range(copies):  # distinct message ids: the bus cannot deduplicate them
            await publish_job(nc.jetstream(), run, dedup_suffix=f"test-copy-{i}")
    finally:
        await nc.close()
        await pool.close()


def _node_starts(events) -> Counter:
    return Counter(e.node_started.node for e in events if e.WhichOneof("kind") == "node_started")


def test_lost_job_message_is_republished(bus_mesh):
    client = api_client(bus_mesh.api_address)
    for name in ("worker-1", "worker-2"):
        bus_mesh.stop_service(name)
    try:
        run = create_run(client, "tiny", {"text": "lost message"})
        assert asyncio.run(_purge_jobs(bus_mesh.nats_url)) >= 1  # the job is gone from the bus
        assert get_run(client, run.run_id).status == QUEUED
    finally:
        for name in ("worker-1", "worker-2"):
            bus_mesh.start_service(name)
    wait_status(client, run.run_id, COMPLETED)
    assert "re-publishing run " + run.run_id in bus_mesh.log_path("api").read_text()


def test_duplicated_job_message_runs_once(bus_mesh):
    client = api_client(bus_mesh.api_address)
    run = create_run(client, "research_assistant", {"question": "duplicates", "delay_seconds": 1.0})
    asyncio.run(_publish_again(bus_mesh.database_url, bus_mesh.nats_url, run.run_id, copies=5))
    events = stream_events(client, run.run_id)
    assert events[-1].status_changed.status == COMPLETED
    assert set(_node_starts(events).values()) == {1}
    running = [e for e in events if e.WhichOneof("kind") == "status_changed"
               and e.status_changed.status == RUNNING]
    assert len(running) == 1
    # The copies are consumed and dropped (the work queue drains), never executed.
    wait_for(lambda: asyncio.run(_queued_jobs(bus_mesh.nats_url)) == 0, 30, message="the copies to be dropped")
    assert [e.sequence for e in stream_events(client, run.run_id)] == [e.sequence for e in events]
    assert get_run(client, run.run_id).attempt == 1


def test_runs_waiting_in_a_backlog_are_not_republished(bus_mesh):
    """A queued run whose job is still waiting behind the queue's backlog is not lost: the
    reconciler leaves it alone however long it waits (a deep backlog would otherwise get
    duplicates every pass), and republishes only what the workers were already handed."""
    client = api_client(bus_mesh.api_address)
    for name in ("worker-1", "worker-2"):
        bus_mesh.stop_service(name)
    try:
        before = asyncio.run(_queued_jobs(bus_mesh.nats_url))
        runs = [create_run(client, "tiny", {"text": f"backlog {i}"}) for i in range(3)]
        api_log = bus_mesh.log_path("api")
        # Well past the quiet period (2 s) with a pass every second: before the queue's
        # frontier was consulted, each of these runs was re-published here.
        asyncio.run(asyncio.sleep(6))
        assert asyncio.run(_queued_jobs(bus_mesh.nats_url)) == before + len(runs)
        assert not any("re-publishing run " + r.run_id in api_log.read_text() for r in runs)
    finally:
        for name in ("worker-1", "worker-2"):
            bus_mesh.start_service(name)
    for r in runs:
        wait_status(client, r.run_id, COMPLETED)
