"""The review loop end to end: interrupts become approvals, decisions resume runs exactly once.

Against the session mesh: api, review, two workers, Postgres and JetStream.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from graphmesh.bus.streams import APPROVALS_STREAM
from graphmesh.client import api_client, review_stub
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    CANCELLED,
    COMPLETED,
    QUEUED,
    RUNNING,
    WAITING,
    as_reviewer,
    assert_gap_free,
    create_run,
    decide,
    event_summary,
    get_run,
    kinds,
    list_approvals,
    list_audit,
    new_thread,
    rpc_error,
    statuses_of,
    stream_events,
    thread_values,
    to_dict,
    wait_approvals,
    wait_for,
    wait_status,
)

PENDING = rpb.APPROVAL_STATUS_PENDING
APPROVED = rpb.APPROVAL_STATUS_APPROVED
REJECTED = rpb.APPROVAL_STATUS_REJECTED
EDITED = rpb.APPROVAL_STATUS_EDITED
EXPIRED = rpb.APPROVAL_STATUS_EXPIRED
A_CANCELLED = rpb.APPROVAL_STATUS_CANCELLED

KIND_VALUE = {"approve": rpb.DECISION_KIND_APPROVE, "reject": rpb.DECISION_KIND_REJECT,
              "edit": rpb.DECISION_KIND_EDIT}
DECISION_STATUS = {"approve": APPROVED, "reject": REJECTED, "edit": EDITED}


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def review(mesh):
    return review_stub(mesh.review_address)


def refund_input(target: str = "cust-1", amount: float = 25.0) -> dict:
    return {"action": "refund", "target": target, "amount": amount}


def start_waiting(client, review, graph: str = "approval_workflow", inputs: dict | None = None,
                  approvals: int = 1, prefix: str = "review"):
    """Creates a run and waits until it rests WAITING with its approvals recorded."""
    run = create_run(client, graph, inputs if inputs is not None else refund_input(), thread_id=new_thread(prefix))
    wait_status(client, run.run_id, WAITING)
    found = wait_approvals(review, run.run_id, approvals, PENDING)
    return run, found


def get_approval(review, approval_id: str):
    return review.GetApproval(rpb.GetApprovalRequest(approval_id=approval_id), timeout=10).approval


def count_status(events, status: int, after_index: int = 0) -> int:
    return sum(1 for e in events[after_index:]
               if e.WhichOneof("kind") == "status_changed" and e.status_changed.status == status)


def waiting_index(events) -> int:
    for i, e in enumerate(events):
        if e.WhichOneof("kind") == "status_changed" and e.status_changed.status == WAITING:
            return i
    raise AssertionError(f"no WAITING event: {event_summary(events)}")


def node_starts(events, node: str) -> int:
    return sum(1 for e in events if e.WhichOneof("kind") == "node_started" and e.node_started.node == node)


def assert_resumed_once(events) -> None:
    """One wait, one resume: a single QUEUED after the WAITING event, two RUNNING in all."""
    summary = event_summary(events)
    assert_gap_free(events)
    w = waiting_index(events)
    assert count_status(events, WAITING) == 1, summary
    assert count_status(events, QUEUED, w) == 1, summary
    assert count_status(events, RUNNING) == 2, summary
    assert statuses_of(events)[-1] == "RUN_STATUS_COMPLETED", summary


# -- 1. approve / reject / edit ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["approve", "reject", "edit"])
def test_decision_paths(client, review, kind):
    run, [approval] = start_waiting(client, review, inputs=refund_input("cust-1", 25.0))
    proposal = {"action": "refund", "target": "cust-1", "reason": "", "amount": 25.0}

    # The request as the reviewer sees it.
    assert approval.run_id == run.run_id and approval.thread_id == run.thread_id
    assert approval.graph == "approval_workflow" and approval.graph_version == "1"
    assert approval.node == "review"
    assert approval.required_role == "reviewer"
    assert approval.interrupt_id
    assert approval.status == PENDING and not approval.HasField("decision")
    assert approval.HasField("created_at") and not approval.HasField("expires_at")
    assert to_dict(approval.payload) == {"kind": "approval", "node": "apply_change", "summary": "Refund 25.00 to cust-1",
                                         "proposed_change": proposal, "requested_by": ""}
    assert get_approval(review, approval.approval_id) == approval

    edited = {"amount": 10.0, "reason": "partial"} if kind == "edit" else None
    decided = decide(review, approval.approval_id, kind, reviewer="alice", comment=f"{kind} it", edited=edited)
    assert decided.approval_id == approval.approval_id
    assert decided.status == DECISION_STATUS[kind]
    assert decided.decision.kind == KIND_VALUE[kind]
    assert decided.decision.reviewer == "alice"
    assert decided.decision.comment == f"{kind} it"
    assert decided.decision.HasField("decided_at")
    assert decided.decision.decided_at.ToDatetime() >= approval.created_at.ToDatetime()
    if edited:
        assert to_dict(decided.decision.edited_value) == edited
    else:
        assert not decided.decision.HasField("edited_value")
    assert decided.payload == approval.payload

    final = wait_status(client, run.run_id, COMPLETED)
    assert not final.HasField("error") or not final.error.code
    assert get_approval(review, approval.approval_id) == decided

    events = stream_events(client, run.run_id)
    summary = event_summary(events)
    assert_gap_free(events)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_WAITING_FOR_APPROVAL",
                                   "RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"], summary
    w = waiting_index(events)
    requested, decided_event, queued, running = events[w - 1], events[w + 1], events[w + 2], events[w + 3]
    assert requested.WhichOneof("kind") == "approval_requested", summary
    assert requested.approval_requested.approval_id == approval.approval_id
    assert requested.approval_requested.interrupt_id == approval.interrupt_id
    assert kinds(events).count("approval_requested") == 1, summary
    assert decided_event.WhichOneof("kind") == "approval_decided", summary
    assert decided_event.approval_decided.approval_id == approval.approval_id
    assert decided_event.approval_decided.decision == kind
    assert decided_event.approval_decided.reviewer == "alice"
    assert kinds(events).count("approval_decided") == 1, summary
    assert queued.status_changed.status == QUEUED, summary
    assert running.status_changed.status == RUNNING, summary
    # Resumed from the checkpoint: the step before the interrupt never re-ran.
    assert node_starts(events, "prepare") == 1, summary
    assert node_starts(events, "apply_change") == (0 if kind == "reject" else 1), summary

    state = thread_values(client, run.thread_id)
    assert state["reviewer"] == "alice"
    assert state["review_comment"] == f"{kind} it"
    assert state["proposed_change"] == proposal
    if kind == "approve":
        assert state["decision"] == "approved" and state["applied"] is True
        assert state["final_change"] == proposal
        assert state["receipt"].startswith("refund-")
    elif kind == "edit":
        assert state["decision"] == "edited" and state["applied"] is True
        assert state["final_change"] == {**proposal, **edited}
        assert state["receipt"].startswith("refund-")
    else:
        assert state["decision"] == "rejected" and state["applied"] is False
        assert state.get("final_change") is None
        assert "receipt" not in state

    # Deciding again the same way returns the recorded decision and changes nothing.
    again = decide(review, approval.approval_id, kind, reviewer="bob", comment="again", edited=edited)
    assert again == decided
    other = "reject" if kind != "reject" else "approve"
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
        decide(review, approval.approval_id, other, reviewer="bob")
    if kind == "edit":  # an edit with another value is a different decision
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
            decide(review, approval.approval_id, "edit", edited={"amount": 11.0})
    assert stream_events(client, run.run_id) == events


def test_anonymous_reviewer_and_deploy(client, review):
    run, [approval] = start_waiting(client, review, inputs={"action": "deploy", "target": "svc-a"})
    assert to_dict(approval.payload)["summary"] == "Deploy svc-a"
    decided = review.Decide(rpb.DecideRequest(approval_id=approval.approval_id, kind=rpb.DECISION_KIND_APPROVE),
                            timeout=30).approval
    assert decided.decision.reviewer == "anonymous"
    wait_status(client, run.run_id, COMPLETED)
    state = thread_values(client, run.thread_id)
    assert state["applied"] is True and state["final_change"] == {"action": "deploy", "target": "svc-a", "reason": ""}


# -- 2. WatchApprovals ----------------------------------------------------------------------------


class Watcher:
    """Reads WatchApprovals on a thread of its own into `events`."""

    def __init__(self, review, **request) -> None:
        self.events: list = []
        self.error: grpc.RpcError | None = None
        self.call = review.WatchApprovals(rpb.WatchApprovalsRequest(**request), timeout=120)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.events.append(response.event)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = err

    def of(self, run_ids) -> list:
        run_ids = {run_ids} if isinstance(run_ids, str) else set(run_ids)
        return [e for e in list(self.events) if e.approval.run_id in run_ids]

    def wait(self, run_ids, count: int, timeout: float = 30.0) -> list:
        def check():
            assert self.error is None, f"watch failed: {self.error}"
            found = self.of(run_ids)
            return found if len(found) >= count else None

        return wait_for(check, timeout, message=lambda: f"{count} approval events for {run_ids}, "
                        f"have {[describe(e) for e in self.events]}")

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)


def describe(event) -> str:
    return f"{event.sequence}:{event.WhichOneof('kind')}:{event.approval.run_id[:8]}:{status_name_a(event)}"


def status_name_a(event) -> str:
    return rpb.ApprovalStatus.Name(event.approval.status)


def approval_consumers(nats_url: str) -> set[str]:
    """Names of the consumers on the approvals stream (each watcher has one)."""
    import nats

    async def names():
        nc = await nats.connect(nats_url)
        try:
            return {c.name for c in await nc.jetstream().consumers_info(APPROVALS_STREAM)}
        finally:
            await nc.close()

    return asyncio.run(names())


def start_watcher(mesh, review, **request) -> Watcher:
    """A watcher that is known to be subscribed: its consumer exists on the stream, so every
    approval event published from now on reaches it."""
    before = approval_consumers(mesh.nats_url)
    watcher = Watcher(review, **request)
    wait_for(lambda: approval_consumers(mesh.nats_url) - before, 30, interval=0.05,
             message="the watcher's consumer on the approvals stream")
    return watcher


def test_watch_sees_request_and_decision(mesh, client, review):
    watcher = start_watcher(mesh, review, include_pending=False, graph="approval_workflow")
    other = start_watcher(mesh, review, include_pending=False, graph="parallel_review")
    try:
        run, [approval] = start_waiting(client, review)
        [requested] = watcher.wait(run.run_id, 1)
        assert requested.WhichOneof("kind") == "requested" and requested.requested
        assert requested.approval.approval_id == approval.approval_id
        assert requested.approval.status == PENDING
        assert requested.approval.payload == approval.payload
        assert requested.sequence > 0

        decide(review, approval.approval_id, "approve", reviewer="carol", comment="ok")
        events = watcher.wait(run.run_id, 2)
        decided = events[1]
        assert decided.WhichOneof("kind") == "decided"
        assert decided.approval.status == APPROVED
        assert decided.approval.decision.reviewer == "carol"
        assert decided.sequence > requested.sequence
        wait_status(client, run.run_id, COMPLETED)
        # A repeated decision publishes nothing new.
        decide(review, approval.approval_id, "approve", reviewer="carol")
        # Graph filter: the approval_workflow events never reach a parallel_review watcher.
        assert other.of(run.run_id) == []
        # ...and a later event proves the first watcher's stream is still in order, without repeats.
        run2, [approval2] = start_waiting(client, review)
        watcher.wait(run2.run_id, 1)
        seen = watcher.of({run.run_id, run2.run_id})
        assert [e.WhichOneof("kind") for e in seen] == ["requested", "decided", "requested"], \
            [describe(e) for e in seen]
        decide(review, approval2.approval_id, "reject")
        watcher.wait(run2.run_id, 2)
        wait_status(client, run2.run_id, COMPLETED)
        all_seqs = [e.sequence for e in watcher.events]
        assert all_seqs == sorted(set(all_seqs)), "watch events out of order or repeated"
        assert watcher.error is None and other.error is None
    finally:
        watcher.close()
        other.close()


def test_watch_reconnect_gets_what_it_missed(mesh, client, review):
    run1, [a1] = start_waiting(client, review)  # requested before any watcher: never seen
    watcher = start_watcher(mesh, review, graph="approval_workflow")
    try:
        run2, [a2] = start_waiting(client, review)
        [seen] = watcher.wait(run2.run_id, 1)
        last = max(e.sequence for e in watcher.events)
    finally:
        watcher.close()
    assert watcher.of(run1.run_id) == []

    # While the watcher is away: two decisions and a new request.
    decide(review, a2.approval_id, "approve", reviewer="dave")
    decide(review, a1.approval_id, "reject", reviewer="dave")
    run3, [a3] = start_waiting(client, review)
    mine = {run1.run_id, run2.run_id, run3.run_id}

    again = Watcher(review, graph="approval_workflow", after_sequence=last)
    try:
        events = again.wait(mine, 3)
        decide(review, a3.approval_id, "approve")  # and live events continue after the backlog
        events = again.wait(mine, 4)
    finally:
        again.close()
    assert [(e.approval.approval_id, e.WhichOneof("kind")) for e in events] == [
        (a2.approval_id, "decided"), (a1.approval_id, "decided"), (a3.approval_id, "requested"),
        (a3.approval_id, "decided")], [describe(e) for e in events]
    seqs = [e.sequence for e in again.events]
    assert all(s > last for s in seqs), f"re-sent an event at or before {last}: {seqs}"
    assert seqs == sorted(set(seqs)), f"events repeated or out of order: {seqs}"
    assert again.error is None
    for run in (run1, run2, run3):
        wait_status(client, run.run_id, COMPLETED)


def test_watch_include_pending_lists_pending_first(mesh, client, review):
    run, [approval] = start_waiting(client, review)
    watcher = Watcher(review, include_pending=True, graph="approval_workflow")
    try:
        [snapshot] = watcher.wait(run.run_id, 1)
        assert snapshot.WhichOneof("kind") == "pending_snapshot"
        assert snapshot.approval.approval_id == approval.approval_id and snapshot.approval.status == PENDING
        pending = {a.approval_id for a in list_approvals(review, graph="approval_workflow", statuses=[PENDING])}
        decide(review, approval.approval_id, "approve")
        events = watcher.wait(run.run_id, 2)
        assert events[1].WhichOneof("kind") == "decided"
        everything = list(watcher.events)
        snapshots = [e for e in everything if e.WhichOneof("kind") == "pending_snapshot"]
        # Every snapshot comes first, and every pending approval of the graph is in it.
        assert everything[:len(snapshots)] == snapshots, [describe(e) for e in everything]
        assert pending <= {e.approval.approval_id for e in snapshots}
        assert all(e.approval.graph == "approval_workflow" for e in everything)
        # Resuming from the snapshot's sequence gets the decision, not the snapshot again.
        resumed = Watcher(review, graph="approval_workflow", after_sequence=snapshot.sequence)
        try:
            [decided] = resumed.wait(run.run_id, 1)
            assert decided.WhichOneof("kind") == "decided"
        finally:
            resumed.close()
    finally:
        watcher.close()
    wait_status(client, run.run_id, COMPLETED)


# -- 3. parallel interrupts -----------------------------------------------------------------------


@pytest.mark.parametrize("second", ["approve", "reject"])
def test_parallel_interrupts(client, review, second):
    run, approvals = start_waiting(client, review, "parallel_review", {"request": "new laptops", "amount": 900},
                                   approvals=2)
    by_role = {a.required_role: a for a in approvals}
    assert set(by_role) == {"finance", "legal"}
    assert by_role["finance"].node == "budget_review" and by_role["legal"].node == "legal_review"
    assert to_dict(by_role["finance"].payload)["check"] == "budget"
    assert to_dict(by_role["legal"].payload)["check"] == "legal"
    assert by_role["finance"].interrupt_id != by_role["legal"].interrupt_id

    decide(review, by_role["finance"].approval_id, "approve", reviewer="fiona", comment="in budget")
    # One decision of two: the run keeps waiting, the other approval stays open.
    assert get_run(client, run.run_id).status == WAITING
    assert get_approval(review, by_role["legal"].approval_id).status == PENDING

    decide(review, by_role["legal"].approval_id, second, reviewer="lee", comment="legal says " + second)
    wait_status(client, run.run_id, COMPLETED)
    state = thread_values(client, run.thread_id)
    assert state["budget"] == {"approved": True, "reviewer": "fiona", "comment": "in budget"}
    assert state["legal"] == {"approved": second == "approve", "reviewer": "lee", "comment": "legal says " + second}
    assert state["outcome"] == ("approved" if second == "approve" else "rejected")

    events = stream_events(client, run.run_id)
    assert_resumed_once(events)
    summary = event_summary(events)
    w = waiting_index(events)
    assert kinds(events[w - 2:w]) == ["approval_requested", "approval_requested"], summary
    assert kinds(events).count("approval_decided") == 2, summary
    assert node_starts(events, "finalize") == 1, summary


# -- 4. repeated, concurrent and conflicting decisions -------------------------------------------


def _decide_all(review, calls):
    """Runs (approval_id, kind, reviewer) decisions at once; returns (call, approval or RpcError)."""
    barrier = threading.Barrier(len(calls))

    def one(call):
        approval_id, kind, who = call
        barrier.wait(30)
        try:
            return call, decide(review, approval_id, kind, reviewer=who)
        except grpc.RpcError as err:
            return call, err

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def test_concurrent_identical_decisions_resume_once(client, review):
    run, [approval] = start_waiting(client, review)
    results = _decide_all(review, [(approval.approval_id, "approve", "alice")] * 16)
    errors = [r for _, r in results if isinstance(r, grpc.RpcError)]
    assert not errors, [(e.code(), e.details()) for e in errors]
    recorded = {r.SerializeToString(deterministic=True) for _, r in results}
    assert len(recorded) == 1, "concurrent identical decisions returned different records"
    assert results[0][1].status == APPROVED and results[0][1].decision.reviewer == "alice"
    wait_status(client, run.run_id, COMPLETED)
    events = stream_events(client, run.run_id)
    assert_resumed_once(events)
    assert kinds(events).count("approval_decided") == 1, event_summary(events)
    assert node_starts(events, "apply_change") == 1


def test_conflicting_decisions_one_wins(client, review):
    run, [approval] = start_waiting(client, review)
    calls = [(approval.approval_id, "approve" if i % 2 else "reject", f"reviewer-{i}") for i in range(16)]
    results = _decide_all(review, calls)
    final = get_approval(review, approval.approval_id)
    winner = {APPROVED: "approve", REJECTED: "reject"}[final.status]
    for (_, kind, _), result in results:
        if kind == winner:
            assert not isinstance(result, grpc.RpcError), (result.code(), result.details())
            assert result == final
        else:
            assert isinstance(result, grpc.RpcError), f"{kind} succeeded although {winner} won: {result}"
            assert result.code() == grpc.StatusCode.FAILED_PRECONDITION, result.details()
            assert error_code(result) == "ALREADY_DECIDED", result.details()
    wait_status(client, run.run_id, COMPLETED)
    events = stream_events(client, run.run_id)
    assert_resumed_once(events)
    assert kinds(events).count("approval_decided") == 1, event_summary(events)
    state = thread_values(client, run.thread_id)
    assert state["decision"] == ("approved" if winner == "approve" else "rejected")
    assert state["reviewer"] == final.decision.reviewer


def test_concurrent_decisions_on_parallel_approvals_resume_once(client, review):
    run, approvals = start_waiting(client, review, "parallel_review", {"request": "race"}, approvals=2)
    calls = [(approvals[i % 2].approval_id, "approve", f"r{i}") for i in range(16)]
    results = _decide_all(review, calls)
    errors = [r for _, r in results if isinstance(r, grpc.RpcError)]
    assert not errors, [(e.code(), e.details()) for e in errors]
    wait_status(client, run.run_id, COMPLETED)
    events = stream_events(client, run.run_id)
    assert_resumed_once(events)
    assert kinds(events).count("approval_decided") == 2, event_summary(events)
    assert node_starts(events, "finalize") == 1
    assert thread_values(client, run.thread_id)["outcome"] == "approved"


# -- 5. unknown, expired, cancelled approvals; invalid decisions ----------------------------------


@pytest.fixture(scope="module")
def expired_run(client, review):
    """An approval_with_deadline run whose approval expired; the run resumed with a rejection."""
    run, [approval] = start_waiting(client, review, "approval_with_deadline", refund_input("cust-x", 5))
    assert approval.HasField("expires_at")
    assert approval.expires_at.ToDatetime() > approval.created_at.ToDatetime()
    wait_for(lambda: get_approval(review, approval.approval_id).status == EXPIRED, 60,
             message="the approval to expire")
    wait_status(client, run.run_id, COMPLETED)
    return run, get_approval(review, approval.approval_id)


@pytest.fixture(scope="module")
def cancelled_run(client, review):
    run, [approval] = start_waiting(client, review)
    cancelled = client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="changed my mind"),
                                      timeout=30).run
    assert cancelled.status == CANCELLED
    return run, get_approval(review, approval.approval_id)


def test_unknown_approval(review):
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        decide(review, str(uuid.uuid4()), "approve")
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        decide(review, "not-an-id", "approve")
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        get_approval(review, str(uuid.uuid4()))
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        get_approval(review, "garbage")


def test_expired_approval(client, review, expired_run):
    run, approval = expired_run
    assert approval.status == EXPIRED
    assert approval.decision.reviewer == "system:expiry"
    assert approval.decision.HasField("decided_at")
    state = thread_values(client, run.thread_id)
    assert state["decision"] == "rejected" and state["applied"] is False
    assert "expired" in state["review_comment"]
    assert state["reviewer"] == "system:expiry"
    for kind in ("approve", "reject"):
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "APPROVAL_EXPIRED"):
            decide(review, approval.approval_id, kind)
    events = stream_events(client, run.run_id)
    assert_resumed_once(events)
    assert get_approval(review, approval.approval_id) == approval


def test_cancelled_approval(client, review, cancelled_run):
    run, approval = cancelled_run
    assert approval.status == A_CANCELLED
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "APPROVAL_CANCELLED"):
        decide(review, approval.approval_id, "approve")
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "APPROVAL_CANCELLED"):
        decide(review, approval.approval_id, "reject")
    again = client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id), timeout=30).run
    assert again.status == CANCELLED and again.run_id == run.run_id
    assert get_run(client, run.run_id).status == CANCELLED
    events = stream_events(client, run.run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_WAITING_FOR_APPROVAL",
                                   "RUN_STATUS_CANCELLED"], event_summary(events)
    assert "approval_decided" not in kinds(events)


def test_cancel_run_with_one_of_two_decided(mesh, client, review):
    run, approvals = start_waiting(client, review, "parallel_review", {"request": "half"}, approvals=2)
    first, second = approvals
    watcher = start_watcher(mesh, review, graph="parallel_review")
    try:
        decide(review, first.approval_id, "approve", reviewer="fiona")
        assert get_run(client, run.run_id).status == WAITING
        cancelled = client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="stop"), timeout=30).run
        assert cancelled.status == CANCELLED
        # The decided approval keeps its decision; only the open one is cancelled.
        assert get_approval(review, first.approval_id).status == APPROVED
        assert get_approval(review, second.approval_id).status == A_CANCELLED
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "APPROVAL_CANCELLED"):
            decide(review, second.approval_id, "approve")
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
            decide(review, first.approval_id, "reject")
        events = watcher.wait(run.run_id, 2)
        assert [(e.approval.approval_id, e.WhichOneof("kind"), e.approval.status) for e in events] == [
            (first.approval_id, "decided", APPROVED), (second.approval_id, "decided", A_CANCELLED)]
    finally:
        watcher.close()
    assert get_run(client, run.run_id).status == CANCELLED
    events = stream_events(client, run.run_id)
    assert statuses_of(events)[-1] == "RUN_STATUS_CANCELLED", event_summary(events)
    assert count_status(events, QUEUED, waiting_index(events)) == 0, event_summary(events)
    assert [r.action for r in list_audit(review, run_id=run.run_id)] == [
        "approval_requested", "approval_requested", "approval_decided", "approval_cancelled"]


def test_cancel_completed_run(client, review):
    run, [approval] = start_waiting(client, review)
    decide(review, approval.approval_id, "approve")
    wait_status(client, run.run_id, COMPLETED)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION):
        client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id), timeout=30)
    assert get_run(client, run.run_id).status == COMPLETED
    assert get_approval(review, approval.approval_id).status == APPROVED


def test_invalid_decisions(client, review):
    run, [approval] = start_waiting(client, review)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        review.Decide(rpb.DecideRequest(approval_id=approval.approval_id), metadata=as_reviewer("alice"), timeout=30)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        decide(review, approval.approval_id, "edit")
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        decide(review, approval.approval_id, "approve", edited={"amount": 1})
    # Nothing was recorded: the approval is still open and the run still waits.
    assert get_approval(review, approval.approval_id).status == PENDING
    assert get_run(client, run.run_id).status == WAITING
    decide(review, approval.approval_id, "edit", edited={"amount": 1})
    wait_status(client, run.run_id, COMPLETED)
    assert thread_values(client, run.thread_id)["final_change"]["amount"] == 1


# -- 6. audit records and ListApprovals -----------------------------------------------------------




def test_audit_records(client, review, expired_run, cancelled_run):
    run, [approval] = start_waiting(client, review)
    decide(review, approval.approval_id, "reject", reviewer="erin", comment="no")
    wait_status(client, run.run_id, COMPLETED)

    decided = list_audit(review, run_id=run.run_id)
    assert [(r.action, r.actor) for r in decided] == [("approval_requested", "system:worker"),
                                                      ("approval_decided", "erin")]
    assert all(r.approval_id == approval.approval_id and r.run_id == run.run_id for r in decided)
    assert to_dict(decided[1].details)["decision"] == "reject"
    assert to_dict(decided[1].details)["comment"] == "no"
    assert list_audit(review, approval_id=approval.approval_id) == decided

    expired, expired_approval = expired_run
    records = list_audit(review, run_id=expired.run_id)
    assert [(r.action, r.actor) for r in records] == [("approval_requested", "system:worker"),
                                                      ("approval_decided", "system:expiry")]
    assert to_dict(records[1].details)["decision"] == "expire"

    cancelled, cancelled_approval = cancelled_run
    records = list_audit(review, run_id=cancelled.run_id)
    assert [r.action for r in records] == ["approval_requested", "approval_cancelled"]
    assert to_dict(records[1].details)["reason"] == "changed my mind"

    # Append-only: oldest first by record id, paging covers the same records, reading twice agrees.
    everything = list_audit(review, page_size=1000)
    ids = [int(r.record_id) for r in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    paged = list_audit(review, page_size=3)
    assert [r.record_id for r in paged[:len(everything)]] == [r.record_id for r in everything]
    assert list_audit(review, page_size=1000)[:len(everything)] == everything
    for r in decided:
        assert r.record_id in {x.record_id for x in everything}
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        review.ListAuditRecords(rpb.ListAuditRecordsRequest(page_token="bogus"), timeout=10)


def test_list_approvals_filters_and_paging(client, review, expired_run, cancelled_run):
    parallel, pair = start_waiting(client, review, "parallel_review", {"request": "listing"}, approvals=2)
    waiting, [open_one] = start_waiting(client, review)
    try:
        # By run.
        assert {a.approval_id for a in list_approvals(review, run_id=parallel.run_id)} == \
            {a.approval_id for a in pair}
        # By graph and status.
        pending = list_approvals(review, graph="approval_workflow", statuses=[PENDING])
        assert open_one.approval_id in {a.approval_id for a in pending}
        assert all(a.graph == "approval_workflow" and a.status == PENDING for a in pending)
        expired = list_approvals(review, statuses=[EXPIRED])
        assert expired_run[1].approval_id in {a.approval_id for a in expired}
        assert all(a.status == EXPIRED for a in expired)
        closed = list_approvals(review, statuses=[A_CANCELLED, EXPIRED])
        assert {expired_run[1].approval_id, cancelled_run[1].approval_id} <= {a.approval_id for a in closed}
        assert all(a.status in (A_CANCELLED, EXPIRED) for a in closed)
        assert list_approvals(review, graph="approval_with_deadline", statuses=[A_CANCELLED]) == []
        assert list_approvals(review, run_id=str(uuid.uuid4())) == []

        # Paging: page by page, every approval once, newest first, same as one big page.
        everything = list_approvals(review, page_size=1000)
        paged = list_approvals(review, page_size=2)
        assert [a.approval_id for a in paged] == [a.approval_id for a in everything]
        assert len({a.approval_id for a in paged}) == len(paged)
        created = [a.created_at.ToDatetime() for a in paged]
        assert created == sorted(created, reverse=True)
        first = review.ListApprovals(rpb.ListApprovalsRequest(run_id=parallel.run_id, page_size=1), timeout=10)
        assert len(first.approvals) == 1 and first.next_page_token
        second = review.ListApprovals(rpb.ListApprovalsRequest(run_id=parallel.run_id, page_size=1,
                                                               page_token=first.next_page_token), timeout=10)
        assert len(second.approvals) == 1 and not second.next_page_token
        assert first.approvals[0].approval_id != second.approvals[0].approval_id
        with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
            review.ListApprovals(rpb.ListApprovalsRequest(statuses=[99]), timeout=10)
    finally:
        for approval in [*pair, open_one]:
            decide(review, approval.approval_id, "approve")
    wait_status(client, parallel.run_id, COMPLETED)
    wait_status(client, waiting.run_id, COMPLETED)
