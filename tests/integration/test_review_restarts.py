"""The review process and every worker restarted while a run waits for approval: the decision
still resumes the run, exactly once, from its checkpoint.

Each test leaves every service of the session mesh running again, even when it fails.
"""

from __future__ import annotations

import threading

import grpc
import pytest

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import (
    COMPLETED,
    QUEUED,
    RUNNING,
    WAITING,
    assert_gap_free,
    create_run,
    decide,
    event_summary,
    get_run,
    kinds,
    new_thread,
    statuses_of,
    stream_events,
    thread_values,
    wait_approvals,
    wait_for,
    wait_status,
)

PENDING = rpb.APPROVAL_STATUS_PENDING
APPROVED = rpb.APPROVAL_STATUS_APPROVED


@pytest.fixture
def restore(mesh):
    """Starts any service a test stopped."""
    yield
    for name in mesh.service_names:
        if mesh.pid(name) is None:
            mesh.start_service(name)


def workers(mesh) -> list[str]:
    return [name for name in mesh.service_names if name.startswith("worker")]


def start_waiting(client, review):
    run = create_run(client, "approval_workflow", {"action": "refund", "target": "cust-r", "amount": 7},
                     thread_id=new_thread("review-restart"))
    wait_status(client, run.run_id, WAITING)
    [approval] = wait_approvals(review, run.run_id, 1, PENDING)
    return run, approval


def assert_resumed_once(events) -> None:
    summary = event_summary(events)
    assert_gap_free(events)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_WAITING_FOR_APPROVAL",
                                   "RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"], summary
    assert kinds(events).count("approval_requested") == 1, summary
    assert kinds(events).count("approval_decided") == 1, summary
    starts = [e.node_started.node for e in events if e.WhichOneof("kind") == "node_started"]
    assert starts.count("prepare") == 1, summary  # never restarted from the beginning
    assert starts.count("apply_change") == 1, summary


def read_watch(review, run_id: str, into: list, ended: threading.Event | None = None, **request) -> grpc.Future:
    """Reads WatchApprovals on a thread into `into` (this run's events); sets `ended` when the call ends."""
    call = review.WatchApprovals(rpb.WatchApprovalsRequest(graph="approval_workflow", **request), timeout=120)

    def read():
        try:
            for response in call:
                if response.event.approval.run_id == run_id:
                    into.append(response.event)
        except grpc.RpcError:
            pass
        finally:
            if ended is not None:
                ended.set()

    threading.Thread(target=read, daemon=True).start()
    return call


def test_review_and_workers_restarted_while_waiting(mesh, restore):
    client = api_client(mesh.api_address)
    review = review_stub(mesh.review_address)
    try:
        run, approval = start_waiting(client, review)
        # A review tool watching while the review process restarts gracefully: its stream ends
        # (it does not hang), and it keeps its position in the approvals stream.
        seen: list = []
        ended = threading.Event()
        call = read_watch(review, run.run_id, seen, ended, include_pending=True)
        try:
            wait_for(lambda: seen, 30, message="the pending approval on the watch")
            old_review = mesh.pid("review")
            mesh.restart_service("review")
            assert mesh.pid("review") not in (None, old_review)
            assert ended.wait(60), "the watch stream outlived the review process"
        finally:
            call.cancel()
        [requested] = seen
        assert requested.WhichOneof("kind") == "pending_snapshot"
        assert requested.approval.approval_id == approval.approval_id

        old = {name: mesh.pid(name) for name in workers(mesh)}
        for name in workers(mesh):
            mesh.stop_service(name, kill=True)
        for name in workers(mesh):
            mesh.start_service(name)
        assert all(mesh.pid(name) not in (None, pid) for name, pid in old.items())

        # The waiting run and its open approval survived all of it.
        assert get_run(client, run.run_id).status == WAITING
        review = review_stub(mesh.review_address)
        assert review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id),
                                  timeout=10).approval == approval

        decided = decide(review, approval.approval_id, "approve", reviewer="alice", comment="after restarts")
        assert decided.status == APPROVED
        wait_status(client, run.run_id, COMPLETED)
        assert_resumed_once(stream_events(client, run.run_id))
        state = thread_values(client, run.thread_id)
        assert state["applied"] is True and state["decision"] == "approved"
        assert state["reviewer"] == "alice" and state["review_comment"] == "after restarts"

        # A review tool reconnecting after the restart resumes where it stopped.
        after: list = []
        call = read_watch(review, run.run_id, after, after_sequence=requested.sequence)
        try:
            wait_for(lambda: after, 30, message="the decision on the resumed watch")
        finally:
            call.cancel()
        assert [e.WhichOneof("kind") for e in after] == ["decided"]
        assert after[0].sequence > requested.sequence
    finally:
        client.close()


def test_decision_while_no_worker_runs(mesh, restore):
    client = api_client(mesh.api_address)
    review = review_stub(mesh.review_address)
    try:
        run, approval = start_waiting(client, review)
        for name in workers(mesh):
            mesh.stop_service(name, kill=True)
        try:
            decide(review, approval.approval_id, "approve", reviewer="bob")
            # Decided, and queued for a worker, but nobody runs it yet.
            assert get_run(client, run.run_id).status == QUEUED
            assert review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id),
                                      timeout=10).approval.status == APPROVED
            # A repeated decision while waiting for a worker does not queue it twice.
            decide(review, approval.approval_id, "approve", reviewer="bob")
            assert get_run(client, run.run_id).status == QUEUED
        finally:
            for name in workers(mesh):
                mesh.start_service(name)
        final = wait_status(client, run.run_id, COMPLETED)
        assert final.status == COMPLETED
        events = stream_events(client, run.run_id)
        assert_resumed_once(events)
        assert sum(1 for e in events if e.WhichOneof("kind") == "status_changed"
                   and e.status_changed.status == RUNNING) == 2
        state = thread_values(client, run.thread_id)
        assert state["applied"] is True and state["reviewer"] == "bob"
    finally:
        client.close()
