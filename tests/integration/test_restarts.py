"""The api and the workers restarted between (and during) runs: nothing is lost.

Each test leaves every service of the session mesh running again, even when it fails.
"""

from __future__ import annotations

import pytest

from graphmesh.client import api_client, worker_stub
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import (
    COMPLETED,
    QUEUED,
    assert_gap_free,
    create_run,
    get_run,
    kinds,
    new_thread,
    statuses_of,
    stream_events,
    wait_for,
    wait_status,
)


@pytest.fixture
def restore(mesh):
    """Starts any service a test stopped."""
    yield
    for name in mesh.service_names:
        if mesh.pid(name) is None:
            mesh.start_service(name)


def _assert_clean_run(events) -> None:
    assert_gap_free(events)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]


def test_api_restart_keeps_runs(mesh, restore):
    client = api_client(mesh.api_address)
    try:
        tiny = create_run(client, "tiny", {"text": "before restart"}, thread_id=new_thread("api-restart"))
        research = create_run(client, "research_assistant", {"question": "grpc", "delay_seconds": 0.2},
                              thread_id=new_thread("api-restart"))
        before = {r.run_id: wait_status(client, r.run_id, COMPLETED) for r in (tiny, research)}
        streams = {run_id: stream_events(client, run_id) for run_id in before}
    finally:
        client.close()

    old_pid = mesh.pid("api")
    mesh.restart_service("api")
    assert mesh.pid("api") not in (None, old_pid)

    client = api_client(mesh.api_address)
    try:
        for run_id, run in before.items():
            again = get_run(client, run_id)
            assert again == run
            events = stream_events(client, run_id)
            _assert_clean_run(events)
            assert events == streams[run_id]
        # A run started through the restarted api completes too.
        after = create_run(client, "tiny", {"text": "after restart"}, thread_id=new_thread("api-restart"))
        wait_status(client, after.run_id, COMPLETED)
        _assert_clean_run(stream_events(client, after.run_id))
    finally:
        client.close()


def test_worker_restart_between_runs(mesh, restore):
    client = api_client(mesh.api_address)
    try:
        first = create_run(client, "tiny", {"text": "one"}, thread_id=new_thread("worker-restart"))
        wait_status(client, first.run_id, COMPLETED)
        mesh.restart_service("worker-1")  # graceful
        mesh.restart_service("worker-2", kill=True)  # a crash
        runs = [create_run(client, "tiny", {"text": f"run {i}"}, thread_id=new_thread("worker-restart"))
                for i in range(6)]
        for run in runs:
            wait_status(client, run.run_id, COMPLETED)
            _assert_clean_run(stream_events(client, run.run_id))
    finally:
        client.close()


def test_runs_wait_while_no_worker_runs(mesh, restore):
    client = api_client(mesh.api_address)
    workers = [n for n in mesh.service_names if n.startswith("worker-")]
    try:
        for name in workers:
            mesh.stop_service(name)
        tiny = create_run(client, "tiny", {"text": "nobody home"}, thread_id=new_thread("no-workers"))
        research = create_run(client, "research_assistant", {"question": "nats", "delay_seconds": 0},
                              thread_id=new_thread("no-workers"))
        for run in (tiny, research):
            assert run.status == QUEUED
        # Still queued (nobody could have taken them), and GetRun says so.
        assert [get_run(client, r.run_id).status for r in (tiny, research)] == [QUEUED, QUEUED]
        for name in workers:
            mesh.start_service(name)
        for run in (tiny, research):
            wait_status(client, run.run_id, COMPLETED)
            events = stream_events(client, run.run_id)
            _assert_clean_run(events)
            assert kinds(events).count("node_started") == (3 if run.graph == "tiny" else 5)
    finally:
        client.close()


def test_graceful_worker_restart_during_run(mesh, restore):
    """SIGTERM drains: the worker finishes (or hands back) its active run; the run completes once."""
    client = api_client(mesh.api_address)
    try:
        run = create_run(client, "research_assistant", {"question": "langgraph postgres", "delay_seconds": 1.5},
                         thread_id=new_thread("drain"))
        by_address = dict(zip(mesh.worker_addresses, [n for n in mesh.service_names if n.startswith("worker-")]))

        def holder():
            for address, name in by_address.items():
                status = worker_stub(address).GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10)
                if any(a.run_id == run.run_id for a in status.active_runs):
                    return name
            return None

        name = wait_for(holder, 30, message="a worker to pick up the run")
        mesh.restart_service(name)
        done = wait_status(client, run.run_id, COMPLETED)
        assert not done.error.code
        events = stream_events(client, run.run_id)
        assert_gap_free(events)
        assert events[-1].status_changed.status == COMPLETED
        assert [e.node_finished.node for e in events if e.WhichOneof("kind") == "node_finished"][-1] == "write_report"
    finally:
        client.close()
