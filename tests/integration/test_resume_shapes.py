"""A decision reaches the graph in the shape the graph expects (graphmesh/resume.py), and a
reject or an expiry never takes the approve branch: for each shape (plain, HumanInterrupt,
HITL request, decision record) approve runs the guarded action, reject and expiry do not,
and a decision the interrupt does not allow is INVALID_ARGUMENT and leaves the approval
PENDING.

A private mesh with one worker, manifest tests/fixtures/resume.yaml (graphs in
tests/fixtures/resume_graphs.py; each records the branch it took and what interrupt()
returned). The `*_expiring` graphs give their approvals one second.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import (
    COMPLETED,
    WAITING,
    create_run,
    decide,
    new_thread,
    private_mesh,
    rpc_error,
    thread_values,
    wait_approvals,
    wait_status,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "resume.yaml"
SHAPES = ("plain", "human_interrupt", "hitl", "record")

# What the graph's interrupt() returned, per shape and decision (comment "not now" on reject).
APPROVED = {
    "plain": True,
    "human_interrupt": {"type": "accept", "args": None},
    "hitl": {"type": "approve"},
}
REJECTED = {
    "plain": False,
    "human_interrupt": {"type": "response", "args": "not now"},  # allow_respond, with a comment
    "hitl": {"type": "reject", "message": "not now"},
}
EXPIRED = {
    "plain": False,
    "human_interrupt": {"type": "ignore", "args": None},
    "hitl": {"type": "reject", "message": "approval expired before a decision"},
}


@pytest.fixture(scope="module")
def rmesh():
    with private_mesh("resume", manifest=MANIFEST, workers=1) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def stubs(rmesh):
    client = api_client(rmesh.api_address)
    yield client, review_stub(rmesh.review_address)
    client.close()


def _waiting(stubs, graph: str):
    client, review = stubs
    run = create_run(client, graph, {"subject": "the quarterly report"}, thread_id=new_thread(graph))
    wait_status(client, run.run_id, WAITING)
    approval, = wait_approvals(review, run.run_id, 1)
    return run, approval


def _finished(stubs, run) -> dict:
    client, _ = stubs
    wait_status(client, run.run_id, COMPLETED)
    return thread_values(client, run.thread_id)


def _record(approved: bool, kind: str, reviewer: str, comment: str) -> dict:
    return {"approved": approved, "decision": kind, "comment": comment, "reviewer": reviewer,
            "expired": kind == "expire"}


@pytest.mark.parametrize("shape", SHAPES)
def test_approve_takes_the_approve_branch(stubs, shape):
    run, approval = _waiting(stubs, f"resume_{shape}")
    assert approval.resume_shape == shape  # review tools see what a decision will mean
    decide(stubs[1], approval.approval_id, "approve", reviewer="alice")
    values = _finished(stubs, run)
    assert values["branch"] == "approve" and values["acted"] is True
    if shape == "record":
        assert values["resumed"] == {**_record(True, "approve", "alice", ""), "edited_value": None}
    else:
        assert values["resumed"] == APPROVED[shape]


@pytest.mark.parametrize("shape", SHAPES)
def test_reject_takes_the_reject_branch(stubs, shape):
    run, approval = _waiting(stubs, f"resume_{shape}")
    decide(stubs[1], approval.approval_id, "reject", reviewer="bob", comment="not now")
    values = _finished(stubs, run)
    assert values["branch"] == "reject" and "acted" not in values
    if shape == "record":
        assert values["resumed"] == {**_record(False, "reject", "bob", "not now"), "edited_value": None}
    else:
        assert values["resumed"] == REJECTED[shape]


@pytest.mark.parametrize("shape", SHAPES)
def test_expiry_takes_the_reject_branch(stubs, shape):
    client, review = stubs
    run, approval = _waiting(stubs, f"resume_{shape}_expiring")
    assert approval.resume_shape == shape
    wait_approvals(review, run.run_id, 1, status=rpb.APPROVAL_STATUS_EXPIRED)
    values = _finished(stubs, run)
    assert values["branch"] == "reject" and "acted" not in values
    if shape == "record":
        assert values["resumed"] == {**_record(False, "expire", "system:expiry", "approval expired before a decision"),
                                     "edited_value": None}
    else:
        assert values["resumed"] == EXPIRED[shape]


@pytest.mark.parametrize("shape, allowed", [
    ("human_interrupt", "allowed: APPROVE, REJECT, REJECT with a comment"),  # allow_edit: false
    ("hitl", "allowed: APPROVE, REJECT"),  # allowed_decisions: [approve, reject]
])
def test_a_decision_the_interrupt_does_not_allow_is_refused_and_leaves_it_pending(stubs, shape, allowed):
    client, review = stubs
    run, approval = _waiting(stubs, f"resume_{shape}")
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "DECISION_NOT_ALLOWED") as err:
        decide(review, approval.approval_id, "edit", reviewer="carol", edited={"subject": "something else"})
    assert "EDIT" in err["details"] and allowed in err["details"]
    current = review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id), timeout=10).approval
    assert current.status == rpb.APPROVAL_STATUS_PENDING and not current.HasField("decision")
    assert wait_status(client, run.run_id, WAITING).status == WAITING
    # Still decidable, by what it allows.
    decide(review, approval.approval_id, "approve", reviewer="carol")
    assert _finished(stubs, run)["branch"] == "approve"


def test_plain_edit_resumes_with_the_edited_value(stubs):
    run, approval = _waiting(stubs, "resume_plain")
    decide(stubs[1], approval.approval_id, "edit", reviewer="dan", edited={"subject": "the annual report"})
    values = _finished(stubs, run)
    assert values["resumed"] == {"subject": "the annual report"} and values["branch"] == "approve"
