"""Operator actions and failure semantics (issue 4, items 1-8) against a real mesh.

Cancel (queued, running, waiting, paused, finished, twice, rollback), the interrupt and
rollback multitask strategies, retry, node failures and retry policies, disabled nodes,
run limits, crash recovery, dead letters and drain.

The module runs its own mesh (tests/fixtures/ops.yaml: two workers, 2-second lease and ack
wait, 3 deliveries at most) so that killing and draining workers never disturbs the session
mesh. The graphs (tests/fixtures/ops_graphs.py) record every node execution in the table
`ops_executions` of the mesh's Postgres, keyed by run id and node, so "completed nodes do not
run again" is counted across worker processes, not inferred.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from graphmesh.client import api_client, review_stub, worker_stub
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    WAITING,
    create_run,
    event_summary,
    get_run,
    new_thread,
    private_mesh,
    rpc_error,
    statuses_of,
    stream_events,
    thread_values,
    to_dict,
    wait_approvals,
    wait_for,
    wait_status,
)

PAUSED = run_pb2.RUN_STATUS_PAUSED
S_RUNNING = run_pb2.RUN_STATUS_RUNNING
MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "ops.yaml"
PIPELINE = "ops_pipeline"
MAX_DELIVERIES = 3
# The table the fixture graphs write to (the same as ops_graphs.CREATE_TABLE).
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS ops_executions (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    thread_id text NOT NULL,
    node text NOT NULL,
    event text NOT NULL,
    attempt integer NOT NULL,
    worker text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
)
"""


@pytest.fixture(scope="module")
def ops_mesh():
    env = {"GRAPHMESH_LEASE_SECONDS": "2", "GRAPHMESH_ACK_WAIT_SECONDS": "2",
           "GRAPHMESH_MAX_DELIVERIES": str(MAX_DELIVERIES)}
    with private_mesh("ops", manifest=MANIFEST, workers=2, extra_env=env) as m:
        with psycopg.connect(m.database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
        yield m


@pytest.fixture(scope="module")
def client(ops_mesh):
    c = api_client(ops_mesh.api_address)
    yield c
    c.close()


@pytest.fixture
def restore(ops_mesh):
    """Starts again every worker a test killed, drained or stopped."""
    yield
    for name in ops_mesh.service_names:
        if ops_mesh.pid(name) is None:
            ops_mesh.start_service(name)


# -- helpers ------------------------------------------------------------------------------------

def rows(mesh, run_id: str, event: str | None = "start") -> list[dict]:
    """The fixture graphs' execution records of a run, oldest first."""
    sql = "SELECT node, event, attempt, worker FROM ops_executions WHERE run_id = %s"
    args: tuple = (run_id,)
    if event is not None:
        sql, args = sql + " AND event = %s", (run_id, event)
    with psycopg.connect(mesh.database_url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql + " ORDER BY id", args).fetchall()


def started(mesh, run_id: str) -> Counter:
    """How many times each node of the run started executing, in any worker."""
    return Counter(r["node"] for r in rows(mesh, run_id))


def events_of(mesh, run_id: str, event: str) -> Counter:
    return Counter(r["node"] for r in rows(mesh, run_id, event))


def wait_started(mesh, run_id: str, node: str, times: int = 1) -> list[dict]:
    return wait_for(lambda: [r for r in rows(mesh, run_id) if r["node"] == node][times - 1:],
                    30, message=f"node {node} of run {run_id} to start {times} time(s)")


def wait_trail(client, thread_id: str, entry: str) -> dict:
    """Waits until the thread's last checkpoint holds `entry` (the checkpoint is written
    asynchronously after a step)."""
    return wait_for(lambda: (v := thread_values(client, thread_id)) and entry in v.get("trail", []) and v,
                    30, message=f"checkpoint of thread {thread_id} with {entry}")


def thread_state(client, thread_id: str) -> pb.GetThreadStateResponse:
    return client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10)


def cancel(client, run_id: str, reason: str = "", action=pb.CANCEL_ACTION_UNSPECIFIED) -> run_pb2.Run:
    return client.runs.CancelRun(pb.CancelRunRequest(run_id=run_id, reason=reason, action=action), timeout=30).run


def retry(client, run_id: str) -> run_pb2.Run:
    return client.runs.RetryRun(pb.RetryRunRequest(run_id=run_id), timeout=30).run


def resume(client, run_id: str) -> run_pb2.Run:
    return client.runs.ResumeRun(pb.ResumeRunRequest(run_id=run_id), timeout=30).run


def inp(tag: str, **behaviour) -> dict:
    """A pipeline input. Every behaviour key is set (empty when unused): input keys persist in
    the thread's state, so a run must not inherit the hold of an earlier run on its thread."""
    return {"tag": tag, "hold": "", "hold_seconds": 0.0, "fail": "", "fail_with": "ValueError", "fail_times": 0,
            "fail_attempts": 0, "kill": "", **behaviour}


def trail(tag: str, *nodes: str) -> list[str]:
    return [f"{tag}:{n}" for n in (nodes or ("fetch", "transform", "publish"))]


def node_started_events(events) -> Counter:
    return Counter(e.node_started.node for e in events if e.WhichOneof("kind") == "node_started")


def terminal_seq(events, status: int) -> int:
    """The sequence number of the (first) status change to `status`."""
    return next(e.sequence for e in events
                if e.WhichOneof("kind") == "status_changed" and e.status_changed.status == status)


def stop_quietly(client, run_id: str) -> None:
    """Cleanup: a run a failed test left holding a node must not hold a worker slot."""
    try:
        if get_run(client, run_id).status not in (COMPLETED, FAILED, CANCELLED):
            cancel(client, run_id, "test cleanup")
    except grpc.RpcError:
        pass


# -- 1. cancel ----------------------------------------------------------------------------------

def test_cancel_queued_run_never_executes(ops_mesh, client):
    thread = new_thread("cancel-queued")
    first = create_run(client, PIPELINE, inp("first", hold="fetch", hold_seconds=30), thread_id=thread)
    try:
        wait_started(ops_mesh, first.run_id, "fetch")
        queued = create_run(client, PIPELINE, inp("queued"), thread_id=thread,
                            multitask_strategy=run_pb2.MULTITASK_STRATEGY_ENQUEUE)
        assert queued.status == QUEUED

        cancelled = cancel(client, queued.run_id, "not needed any more")
        assert cancelled.status == CANCELLED
        assert (cancelled.error.code, cancelled.error.message) == ("CANCELLED", "not needed any more")

        # The thread's active run ends; the cancelled run must not be handed the thread.
        assert cancel(client, first.run_id, "make room").status == CANCELLED
        follow = create_run(client, PIPELINE, inp("follow"), thread_id=thread)
        wait_status(client, follow.run_id, COMPLETED)
    finally:
        stop_quietly(client, first.run_id)

    assert get_run(client, queued.run_id).status == CANCELLED
    assert started(ops_mesh, queued.run_id) == Counter()
    events = stream_events(client, queued.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_CANCELLED"], event_summary(events)
    assert node_started_events(events) == Counter()
    assert thread_values(client, thread)["trail"] == trail("follow")


def test_cancel_running_run_stops_the_current_node_and_keeps_the_checkpoint(ops_mesh, client):
    thread = new_thread("cancel-running")
    run = create_run(client, PIPELINE, inp("mid", hold="transform", hold_seconds=60), thread_id=thread)
    try:
        wait_started(ops_mesh, run.run_id, "transform")
        wait_trail(client, thread, "mid:fetch")

        cancelled = cancel(client, run.run_id, "operator stop")
        # The api waits (up to 3 s) for the worker: an awaiting node is cancelled at once.
        assert cancelled.status == CANCELLED, f"CancelRun answered {run_pb2.RunStatus.Name(cancelled.status)}"
        assert (cancelled.error.code, cancelled.error.message) == ("CANCELLED", "operator stop")
    finally:
        stop_quietly(client, run.run_id)

    # The node got CancelledError (it did not run on in the background) and nothing after it ran.
    wait_for(lambda: events_of(ops_mesh, run.run_id, "cancelled")["transform"] == 1, 10,
             message="transform to be cancelled")
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=1)
    assert events_of(ops_mesh, run.run_id, "end") == Counter(fetch=1)

    # The last checkpoint (after fetch) stays.
    state = thread_state(client, thread)
    assert to_dict(state.values)["trail"] == trail("mid", "fetch")
    assert list(state.next) == ["transform"]
    assert to_dict(state.checkpoint_metadata)["gm_run_id"] == run.run_id
    assert state.active_run_id == ""

    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_CANCELLED"]
    assert "publish" not in node_started_events(events)

    # 3. Retry of the CANCELLED run: attempt 2 continues from the checkpoint; fetch does not run again.
    again = retry(client, run.run_id)
    assert (again.status, again.attempt) == (QUEUED, 2)
    done = wait_status(client, run.run_id, COMPLETED)
    assert done.attempt == 2
    assert [(e.code, e.message) for e in done.previous_errors] == [("CANCELLED", "operator stop")]
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=2, publish=1)
    assert thread_values(client, thread)["trail"] == trail("mid")


def test_cancel_waiting_run_closes_its_approval(ops_mesh, client):
    review = review_stub(ops_mesh.review_address)
    run = create_run(client, "approval_workflow", {"action": "refund", "target": "order-7", "amount": 12.5},
                     thread_id=new_thread("cancel-waiting"))
    wait_status(client, run.run_id, WAITING)
    wait_approvals(review, run.run_id, 1, rpb.APPROVAL_STATUS_PENDING)

    cancelled = cancel(client, run.run_id, "customer withdrew")
    assert cancelled.status == CANCELLED
    assert cancelled.error.code == "CANCELLED"
    wait_approvals(review, run.run_id, 1, rpb.APPROVAL_STATUS_CANCELLED)

    # Twice: the cancelled run, unchanged.
    again = cancel(client, run.run_id, "again")
    assert again == cancelled


def test_cancel_finished_run_is_refused(ops_mesh, client):
    run = create_run(client, PIPELINE, inp("done"), thread_id=new_thread("cancel-finished"))
    done = wait_status(client, run.run_id, COMPLETED)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "RUN_FINISHED") as info:
        cancel(client, run.run_id, "too late")
    assert run.run_id in info["details"]
    assert get_run(client, run.run_id) == done


def test_cancel_running_run_twice_returns_the_cancelled_run(ops_mesh, client):
    run = create_run(client, PIPELINE, inp("twice", hold="fetch", hold_seconds=60),
                     thread_id=new_thread("cancel-twice"))
    try:
        wait_started(ops_mesh, run.run_id, "fetch")
        first = cancel(client, run.run_id, "stop")
        assert first.status == CANCELLED
    finally:
        stop_quietly(client, run.run_id)
    second = cancel(client, run.run_id, "stop again")
    assert second.status == CANCELLED
    assert second.error.message == "stop"
    assert second.updated_at == first.updated_at


# -- 2. rollback and the multitask strategies ----------------------------------------------------

def test_cancel_with_rollback_restores_the_thread(ops_mesh, client):
    thread = new_thread("rollback")
    one = create_run(client, PIPELINE, inp("one"), thread_id=thread)
    wait_status(client, one.run_id, COMPLETED)
    before = thread_state(client, thread)
    assert to_dict(before.values)["trail"] == trail("one")

    two = create_run(client, PIPELINE, inp("two", hold="transform", hold_seconds=60), thread_id=thread)
    try:
        wait_started(ops_mesh, two.run_id, "transform")
        wait_trail(client, thread, "two:fetch")
        cancelled = cancel(client, two.run_id, "undo it", pb.CANCEL_ACTION_ROLLBACK)
        assert cancelled.status == CANCELLED
    finally:
        stop_quietly(client, two.run_id)

    after = thread_state(client, thread)
    assert to_dict(after.values) == to_dict(before.values)
    assert after.checkpoint_id == before.checkpoint_id
    assert to_dict(after.checkpoint_metadata)["gm_run_id"] == one.run_id
    assert list(after.next) == []

    # The thread goes on from the first run's state.
    three = create_run(client, PIPELINE, inp("three"), thread_id=thread)
    wait_status(client, three.run_id, COMPLETED)
    assert thread_values(client, thread)["trail"] == trail("one") + trail("three")


def test_rollback_of_a_queued_run(ops_mesh, client):
    """ROLLBACK at rest: nothing to undo, the run is cancelled and the thread is untouched."""
    thread = new_thread("rollback-queued")
    one = create_run(client, PIPELINE, inp("one", hold="fetch", hold_seconds=30), thread_id=thread)
    try:
        wait_started(ops_mesh, one.run_id, "fetch")
        two = create_run(client, PIPELINE, inp("two"), thread_id=thread,
                         multitask_strategy=run_pb2.MULTITASK_STRATEGY_ENQUEUE)
        assert cancel(client, two.run_id, "", pb.CANCEL_ACTION_ROLLBACK).status == CANCELLED
    finally:
        stop_quietly(client, one.run_id)
    assert started(ops_mesh, two.run_id) == Counter()


@pytest.mark.parametrize("strategy", ["INTERRUPT", "ROLLBACK"])
def test_multitask_strategy_on_a_busy_thread(ops_mesh, client, strategy):
    thread = new_thread(f"multitask-{strategy.lower()}")
    zero = create_run(client, PIPELINE, inp("zero"), thread_id=thread)
    wait_status(client, zero.run_id, COMPLETED)

    busy = create_run(client, PIPELINE, inp("busy", hold="transform", hold_seconds=60), thread_id=thread)
    try:
        wait_started(ops_mesh, busy.run_id, "transform")
        wait_trail(client, thread, "busy:fetch")
        new = create_run(client, PIPELINE, inp("new"), thread_id=thread,
                         multitask_strategy=getattr(run_pb2, f"MULTITASK_STRATEGY_{strategy}"))
        assert new.status == QUEUED

        interrupted = wait_status(client, busy.run_id, {CANCELLED, COMPLETED, FAILED}, timeout=30)
        assert interrupted.status == CANCELLED, interrupted
        assert new.run_id in interrupted.error.message
        wait_status(client, new.run_id, COMPLETED)
    finally:
        stop_quietly(client, busy.run_id)

    # The interrupted run stopped inside transform and never reached publish.
    assert started(ops_mesh, busy.run_id) == Counter(fetch=1, transform=1)
    assert events_of(ops_mesh, busy.run_id, "cancelled") == Counter(transform=1)
    kept = trail("busy", "fetch") if strategy == "INTERRUPT" else []
    assert thread_values(client, thread)["trail"] == trail("zero") + kept + trail("new")
    events = stream_events(client, new.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]


# -- 3. retry, 4. node failures -------------------------------------------------------------------

def test_node_failure_then_retry_resumes_from_the_last_checkpoint(ops_mesh, client):
    thread = new_thread("retry")
    # transform raises ValueError on attempt 1: not transient, so its retry policy (3 attempts) skips it.
    run = create_run(client, PIPELINE, inp("rt", fail="transform", fail_with="ValueError", fail_attempts=1),
                     thread_id=thread)
    failed = wait_status(client, run.run_id, {FAILED, COMPLETED})
    assert failed.status == FAILED
    assert failed.error.code == "NODE_FAILED"
    assert failed.error.node == "transform"
    assert "ValueError" in failed.error.message and "transform refused input 'rt'" in failed.error.message
    assert "Traceback" not in failed.error.message and 'File "' not in failed.error.message
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=1)
    first_events = stream_events(client, run.run_id)
    error_events = [e.error for e in first_events if e.WhichOneof("kind") == "error"]
    assert all("Traceback" not in e.message for e in error_events)

    # Only FAILED or CANCELLED runs can be retried.
    other = create_run(client, PIPELINE, inp("ok"), thread_id=new_thread("retry-completed"))
    wait_status(client, other.run_id, COMPLETED)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "RUN_NOT_RETRYABLE"):
        retry(client, other.run_id)

    queued = retry(client, run.run_id)
    assert (queued.status, queued.attempt) == (QUEUED, 2)
    done = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert done.status == COMPLETED, done.error
    assert done.attempt == 2
    assert not done.HasField("error") or done.error.code == ""
    assert [(e.code, e.node) for e in done.previous_errors] == [("NODE_FAILED", "transform")]
    assert done.previous_errors[0].message == failed.error.message

    # fetch completed before the failure: it does not run again.
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=2, publish=1)
    assert [(r["node"], r["attempt"]) for r in rows(ops_mesh, run.run_id)] == [
        ("fetch", 1), ("transform", 1), ("transform", 2), ("publish", 2)]
    assert thread_values(client, thread)["trail"] == trail("rt")

    second_events = stream_events(client, run.run_id, after=terminal_seq(first_events, FAILED))
    assert statuses_of(second_events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]
    assert node_started_events(second_events) == Counter(transform=1, publish=1)


def test_transient_failure_is_retried_by_the_node_policy(ops_mesh, client):
    # ConnectionError twice, then success: within transform's 3 attempts.
    run = create_run(client, PIPELINE, inp("flaky", fail="transform", fail_with="ConnectionError", fail_times=2),
                     thread_id=new_thread("transient"))
    done = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert done.status == COMPLETED, done.error
    assert done.attempt == 1
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=3, publish=1)


def test_transient_failure_past_the_policy_fails_the_run(ops_mesh, client):
    run = create_run(client, PIPELINE, inp("down", fail="transform", fail_with="ConnectionError", fail_times=10),
                     thread_id=new_thread("exhausted"))
    failed = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert failed.status == FAILED
    assert (failed.error.code, failed.error.node) == ("NODE_FAILED", "transform")
    assert "ConnectionError" in failed.error.message and "Traceback" not in failed.error.message
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=3)  # max_attempts: 3


# -- 5. disable a node ----------------------------------------------------------------------------

def test_disable_node_pauses_runs_and_resume_continues(ops_mesh, client):
    graphs = client.graphs
    reason = "vendor API down"
    with rpc_error(grpc.StatusCode.NOT_FOUND, "NODE_NOT_FOUND"):
        graphs.DisableNode(gpb.DisableNodeRequest(graph=PIPELINE, node="nope", reason=reason), timeout=10)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "NODE_NOT_DISABLED"):
        graphs.EnableNode(gpb.EnableNodeRequest(graph=PIPELINE, node="transform"), timeout=10)

    response = graphs.DisableNode(gpb.DisableNodeRequest(graph=PIPELINE, node="transform", reason=reason), timeout=10)
    try:
        assert [(d.node, d.reason) for d in response.graph.disabled_nodes] == [("transform", reason)]
        shown = graphs.GetGraph(gpb.GetGraphRequest(graph=PIPELINE), timeout=10).graph
        assert [(d.node, d.reason) for d in shown.disabled_nodes] == [("transform", reason)]

        # fetch holds a second, so the run reaches transform after the change has reached every
        # worker (the contract: within a second).
        thread = new_thread("disabled")
        run = create_run(client, PIPELINE, inp("dis", hold="fetch", hold_seconds=1), thread_id=thread)
        other = create_run(client, PIPELINE, inp("other", hold="fetch", hold_seconds=1),
                           thread_id=new_thread("disabled"))
        paused = wait_status(client, run.run_id, {PAUSED, COMPLETED, FAILED})
        assert paused.status == PAUSED, paused
        assert (paused.error.code, paused.error.node) == ("NODE_DISABLED", "transform")
        assert reason in paused.error.message
        assert started(ops_mesh, run.run_id) == Counter(fetch=1)  # transform's body never ran

        # Cancelling a PAUSED run.
        assert wait_status(client, other.run_id, {PAUSED, COMPLETED, FAILED}).status == PAUSED
        assert cancel(client, other.run_id, "not worth it").status == CANCELLED

        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "NODE_DISABLED"):
            resume(client, run.run_id)
        assert get_run(client, run.run_id).status == PAUSED
    finally:
        enabled = graphs.EnableNode(gpb.EnableNodeRequest(graph=PIPELINE, node="transform"), timeout=10)
    assert list(enabled.graph.disabled_nodes) == []

    resumed = resume(client, run.run_id)
    assert resumed.status == QUEUED
    done = wait_status(client, run.run_id, {COMPLETED, FAILED, PAUSED})
    assert done.status == COMPLETED, done
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=1, publish=1)
    assert started(ops_mesh, other.run_id) == Counter(fetch=1)
    assert thread_values(client, thread)["trail"] == trail("dis")
    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_PAUSED",
                                   "RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]
    assert node_started_events(events)["fetch"] == 1
    assert node_started_events(events)["publish"] == 1


# -- 6. limits ------------------------------------------------------------------------------------

def test_run_timeout(ops_mesh, client):
    run = create_run(client, "ops_timeout", inp("slow", hold="transform", hold_seconds=60),
                     thread_id=new_thread("timeout"))
    try:
        failed = wait_status(client, run.run_id, {FAILED, COMPLETED, CANCELLED}, timeout=30)
    finally:
        stop_quietly(client, run.run_id)
    assert failed.status == FAILED
    assert failed.error.code == "RUN_TIMEOUT"
    assert "2 s" in failed.error.message
    assert "publish" not in started(ops_mesh, run.run_id)
    wait_for(lambda: events_of(ops_mesh, run.run_id, "cancelled")["transform"] == 1, 10,
             message="the timed-out node to be cancelled")


def test_step_limit(ops_mesh, client):
    run = create_run(client, "ops_loop", {}, thread_id=new_thread("steps"))
    failed = wait_status(client, run.run_id, {FAILED, COMPLETED})
    assert failed.status == FAILED
    assert failed.error.code == "STEP_LIMIT_EXCEEDED"
    assert "6" in failed.error.message


# -- 7. crash recovery and dead letters -----------------------------------------------------------

def test_sigkilled_worker_run_is_resumed_elsewhere(ops_mesh, client, restore):
    thread = new_thread("sigkill")
    run = create_run(client, PIPELINE, inp("crash", hold="transform", hold_seconds=60), thread_id=thread)
    victim = wait_started(ops_mesh, run.run_id, "transform")[0]["worker"]
    wait_trail(client, thread, "crash:fetch")
    ops_mesh.stop_service(victim, kill=True)

    done = wait_status(client, run.run_id, {COMPLETED, FAILED}, timeout=60)
    assert done.status == COMPLETED, done.error
    executions = rows(ops_mesh, run.run_id)
    assert Counter(r["node"] for r in executions) == Counter(fetch=1, transform=2, publish=1), executions
    survivors = {r["worker"] for r in executions[2:]}
    assert len(survivors) == 1 and victim not in survivors, executions
    assert thread_values(client, thread)["trail"] == trail("crash")

    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_RUNNING",
                                   "RUN_STATUS_COMPLETED"], event_summary(events)
    assert node_started_events(events)["fetch"] == 1


def test_cancel_of_a_run_whose_worker_died(ops_mesh, client, restore):
    """Nobody receives the cancel signal; the worker that claims the run next finds the request
    on the record and cancels it instead of running it on."""
    thread = new_thread("cancel-dead-worker")
    run = create_run(client, PIPELINE, inp("orphan", hold="transform", hold_seconds=60), thread_id=thread)
    victim = wait_started(ops_mesh, run.run_id, "transform")[0]["worker"]
    wait_trail(client, thread, "orphan:fetch")
    ops_mesh.stop_service(victim, kill=True)

    answered = cancel(client, run.run_id, "worker gone")
    assert answered.status in (S_RUNNING, CANCELLED)  # RUNNING: request noted, no worker confirmed yet
    done = wait_status(client, run.run_id, {CANCELLED, COMPLETED, FAILED}, timeout=60)
    assert done.status == CANCELLED, done
    assert (done.error.code, done.error.message) == ("CANCELLED", "worker gone")
    assert started(ops_mesh, run.run_id) == Counter(fetch=1, transform=1)  # nothing ran after the request
    assert thread_values(client, thread)["trail"] == trail("orphan", "fetch")
    events = stream_events(client, run.run_id)
    assert statuses_of(events)[-1] == "RUN_STATUS_CANCELLED", event_summary(events)


def test_crash_loop_becomes_a_dead_letter(ops_mesh, client, restore):
    run = create_run(client, PIPELINE, inp("dl", kill="fetch"), thread_id=new_thread("crash-loop"))

    def ended():
        for name in ops_mesh.service_names:  # the graph kills its worker: bring workers back
            if name.startswith("worker") and ops_mesh.pid(name) is None:
                ops_mesh.start_service(name)
        current = get_run(client, run.run_id)
        return current if current.status in (FAILED, COMPLETED, CANCELLED) else None

    failed = wait_for(ended, 120, interval=0.2, message=f"run {run.run_id} to be dead-lettered")
    assert failed.status == FAILED
    assert failed.error.code == "CRASH_LOOP"
    assert "dead letter" in failed.error.message
    assert started(ops_mesh, run.run_id) == Counter(fetch=MAX_DELIVERIES)

    with psycopg.connect(ops_mesh.database_url, autocommit=True, row_factory=dict_row) as conn:
        letters = conn.execute("SELECT * FROM gm_dead_letters WHERE run_id = %s", (run.run_id,)).fetchall()
    assert len(letters) == 1, letters
    assert letters[0]["attempt"] == 1
    assert letters[0]["deliveries"] == MAX_DELIVERIES
    assert letters[0]["reason"] == failed.error.message

    # Not retried forever: it stays FAILED.
    events = stream_events(client, run.run_id)
    assert statuses_of(events)[-1] == "RUN_STATUS_FAILED", (event_summary(events), failed.error)
    assert get_run(client, run.run_id).status == FAILED


# -- 8. drain -------------------------------------------------------------------------------------

def test_drain_hands_the_run_back_to_another_worker(ops_mesh, client, restore):
    thread = new_thread("drain")
    # transform outlasts the 1-second grace, then the run stops at the step boundary after it.
    run = create_run(client, PIPELINE, inp("drain", hold="transform", hold_seconds=3), thread_id=thread)
    drained = wait_started(ops_mesh, run.run_id, "transform")[0]["worker"]
    stub = worker_stub(ops_mesh.address(drained))
    status = stub.Drain(wpb.DrainRequest(grace_seconds=1), timeout=10).status
    assert status.draining
    assert status.worker_id == drained

    done = wait_status(client, run.run_id, {COMPLETED, FAILED}, timeout=60)
    assert done.status == COMPLETED, done.error
    executions = rows(ops_mesh, run.run_id)
    assert Counter(r["node"] for r in executions) == Counter(fetch=1, transform=1, publish=1), executions
    assert [r["worker"] for r in executions][:2] == [drained, drained]
    assert executions[2]["worker"] != drained, executions
    assert events_of(ops_mesh, run.run_id, "cancelled") == Counter()  # transform finished within the drain
    assert thread_values(client, thread)["trail"] == trail("drain")
    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_QUEUED",
                                   "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"], event_summary(events)

    # The drained worker takes no new runs.
    after = wait_for(lambda: (s := stub.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10)) and
                     not s.active_runs and s, 30, message="the drained worker to be idle")
    assert after.draining
    later = [create_run(client, PIPELINE, inp(f"later{i}"), thread_id=new_thread("drain")) for i in range(4)]
    for r in later:
        wait_status(client, r.run_id, COMPLETED)
        assert {e["worker"] for e in rows(ops_mesh, r.run_id)} != {drained}
        assert drained not in {e["worker"] for e in rows(ops_mesh, r.run_id)}
    ops_mesh.stop_service(drained)  # `restore` starts it again


def test_drain_cuts_off_a_node_that_never_reaches_a_step_boundary(ops_mesh, client, restore):
    """Past the grace and the 10 s allowed to reach a step boundary, the run is cut off
    mid-node and resumes elsewhere from its last checkpoint (the cut-off node runs again)."""
    thread = new_thread("drain-cutoff")
    run = create_run(client, PIPELINE, inp("cut", hold="transform", hold_seconds=60), thread_id=thread)
    drained = wait_started(ops_mesh, run.run_id, "transform")[0]["worker"]
    wait_trail(client, thread, "cut:fetch")
    worker_stub(ops_mesh.address(drained)).Drain(wpb.DrainRequest(grace_seconds=1), timeout=10)

    done = wait_status(client, run.run_id, {COMPLETED, FAILED, CANCELLED}, timeout=60)
    assert done.status == COMPLETED, done.error
    executions = rows(ops_mesh, run.run_id)
    assert [(r["node"], r["worker"] == drained) for r in executions] == [
        ("fetch", True), ("transform", True), ("transform", False), ("publish", False)], executions
    assert events_of(ops_mesh, run.run_id, "cancelled") == Counter(transform=1)
    assert thread_values(client, thread)["trail"] == trail("cut")
    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_QUEUED",
                                   "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"], event_summary(events)
    assert node_started_events(events)["fetch"] == 1
    ops_mesh.stop_service(drained)  # `restore` starts it again


def test_sigterm_lets_a_short_run_finish(ops_mesh, client, restore):
    """SIGTERM drains: a run that ends within the grace period finishes on its worker."""
    thread = new_thread("sigterm")
    run = create_run(client, PIPELINE, inp("term", hold="transform", hold_seconds=2), thread_id=thread)
    worker = wait_started(ops_mesh, run.run_id, "transform")[0]["worker"]
    os.kill(ops_mesh.pid(worker), signal.SIGTERM)
    done = wait_status(client, run.run_id, {COMPLETED, FAILED}, timeout=60)
    assert done.status == COMPLETED, done.error
    executions = rows(ops_mesh, run.run_id)
    assert [(r["node"], r["worker"]) for r in executions] == [
        ("fetch", worker), ("transform", worker), ("publish", worker)]
    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]
    wait_for(lambda: ops_mesh.pid(worker) is None, 30, message=f"{worker} to exit after SIGTERM")
