"""InvokeRun: the synchronous path for sync-eligible graphs, bounded by the call's deadline."""

from __future__ import annotations

import grpc
import pytest

from graphmesh.client import api_client
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    FAILED,
    TERMINAL,
    assert_gap_free,
    kinds,
    list_all_runs,
    new_thread,
    rpc_error,
    stream_events,
    struct,
    to_dict,
    wait_for,
)


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


def invoke(client, graph: str, inputs: dict, *, timeout: float = 30, **fields) -> pb.InvokeRunResponse:
    return client.runs.InvokeRun(pb.InvokeRunRequest(graph=graph, input=struct(inputs), **fields), timeout=timeout)


def test_invoke_tiny_returns_output(client):
    thread = new_thread("sync")
    response = invoke(client, "tiny", {"text": "Sync Path  works"}, thread_id=thread, metadata={"via": "invoke"})
    run = response.run
    assert run.status == COMPLETED and run.thread_id == thread and run.graph == "tiny"
    assert run.HasField("finished_at") and dict(run.metadata) == {"via": "invoke"}
    output = to_dict(response.output)
    assert output["normalized"] == "sync path works"
    assert output["word_count"] == 3 and output["summary"] == "3 words: sync path works"

    # A sync run is an ordinary run: listed, streamable, with its checkpoint.
    assert [r.run_id for r in list_all_runs(client, thread_id=thread)] == [run.run_id]
    events = stream_events(client, run.run_id)
    assert_gap_free(events)
    assert events[0].status_changed.status != events[-1].status_changed.status
    assert events[-1].status_changed.status == COMPLETED
    assert kinds(events).count("node_started") == 3
    state = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread), timeout=10)
    assert to_dict(state.values) == output
    assert to_dict(state.checkpoint_metadata)["gm_run_id"] == run.run_id

    # Continuing the thread synchronously.
    again = invoke(client, "tiny", {"text": "second"}, thread_id=thread)
    assert again.run.status == COMPLETED and again.run.run_id != run.run_id
    assert to_dict(again.output)["summary"] == "1 words: second"


def test_invoke_without_thread_gets_new_thread(client):
    a = invoke(client, "tiny", {"text": "a"}).run
    b = invoke(client, "tiny", {"text": "b"}).run
    assert a.thread_id and b.thread_id and a.thread_id != b.thread_id


def test_invoke_not_sync_eligible(client):
    thread = new_thread("not-sync")
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "NOT_SYNC_ELIGIBLE") as err:
        invoke(client, "research_assistant", {"question": "grpc", "delay_seconds": 0}, thread_id=thread)
    assert "research_assistant" in err["details"]
    assert list_all_runs(client, thread_id=thread) == []


def test_invoke_deadline_leaves_failed_run_not_ghost(client):
    """Calls with deadlines too short to finish: each leaves either no run at all (the call
    expired before the api created one) or a FAILED run with DEADLINE_EXCEEDED, never a run
    stuck QUEUED/RUNNING; and at least one attempt must reach the api and leave a FAILED run."""
    outcomes = []
    for timeout in (0.005, 0.01, 0.02, 0.03, 0.05, 0.08):
        thread = new_thread("deadline")
        try:
            response = invoke(client, "tiny", {"text": "too slow " * 50}, thread_id=thread, timeout=timeout)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (err.code(), err.details())
            result = f"DEADLINE_EXCEEDED ({error_code(err)})"
        else:  # fast enough after all: a normal completed run
            assert response.run.status == COMPLETED
            outcomes.append((timeout, "completed", []))
            continue

        # Settled: no run, or only runs in a terminal status. A ghost QUEUED/RUNNING run fails here.
        def settled():
            runs = list_all_runs(client, thread_id=thread)
            return (runs,) if all(r.status in TERMINAL for r in runs) else None

        try:
            (runs,) = wait_for(settled, 10, message=f"runs on {thread} to settle")
        except AssertionError:
            runs = list_all_runs(client, thread_id=thread)
            pytest.fail(f"timeout={timeout}: call failed with {result} but left a ghost run: "
                        f"{[(r.run_id, r.status, r.error.code) for r in runs]}")
        summary = [(r.status, r.error.code) for r in runs]
        assert len(runs) <= 1, summary
        if runs:
            assert summary == [(FAILED, "DEADLINE_EXCEEDED")], (
                f"timeout={timeout}: the call failed with {result} but its run ended {summary}")
            assert "deadline" in runs[0].error.message
            # The thread is free again: the next sync run on it works.
            assert invoke(client, "tiny", {"text": "ok"}, thread_id=thread).run.status == COMPLETED
        outcomes.append((timeout, result, summary))
    failed_runs = [o for o in outcomes if o[2] == [(FAILED, "DEADLINE_EXCEEDED")]]
    assert failed_runs, f"no attempt left a FAILED/DEADLINE_EXCEEDED run: {outcomes}"
