"""RESPOND decisions (DecideRequest.kind RESPOND, value): the run resumes with exactly the
value given, as LangGraph's Command(resume=value) would, whatever the interrupt's shape but
`record` (graphmesh's own decision record: RESPOND_NOT_FOR_RECORD).

A private mesh with one worker, manifest tests/fixtures/respond.yaml: `respond_question`
does `answer = interrupt("...?")` (tests/fixtures/respond_graphs.py), and
`respond_human_interrupt` is agent-inbox's HumanInterrupt (tests/fixtures/resume_graphs.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import json_format, struct_pb2

from graphmesh.client import api_client, review_stub
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import (
    COMPLETED,
    WAITING,
    as_reviewer,
    create_run,
    decide,
    list_audit,
    new_thread,
    private_mesh,
    rpc_error,
    thread_values,
    wait_approvals,
    wait_status,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "respond.yaml"
CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
RESPONDED = rpb.APPROVAL_STATUS_RESPONDED


@pytest.fixture(scope="module")
def rmesh():
    with private_mesh("respond", manifest=MANIFEST, workers=1) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def stubs(rmesh):
    client = api_client(rmesh.api_address)
    yield client, review_stub(rmesh.review_address)
    client.close()


def _waiting(stubs, graph: str = "respond_question", inputs: dict | None = None):
    client, review = stubs
    run = create_run(client, graph, inputs or {}, thread_id=new_thread(graph))
    wait_status(client, run.run_id, WAITING)
    approval, = wait_approvals(review, run.run_id, 1)
    return run, approval


def _respond(review, approval_id: str, value, *, reviewer: str = "rosa", comment: str = "") -> rpb.Approval:
    request = rpb.DecideRequest(approval_id=approval_id, kind=rpb.DECISION_KIND_RESPOND, comment=comment,
                                value=json_format.ParseDict(value, struct_pb2.Value()))
    return review.Decide(request, metadata=as_reviewer(reviewer), timeout=30).approval


def _value(message) -> object:
    return json_format.MessageToDict(message)


def _finished(stubs, run) -> dict:
    client, _ = stubs
    wait_status(client, run.run_id, COMPLETED)
    return thread_values(client, run.thread_id)


def test_a_question_answered_with_a_string(stubs):
    _, review = stubs
    run, approval = _waiting(stubs)
    assert approval.resume_shape == "plain"
    decided = _respond(review, approval.approval_id, "teal", comment="brand colour")
    assert decided.status == RESPONDED
    assert decided.decision.kind == rpb.DECISION_KIND_RESPOND
    assert decided.decision.reviewer == "rosa" and decided.decision.comment == "brand colour"
    assert _value(decided.decision.value) == "teal"
    assert not decided.decision.HasField("edited_value")
    assert _finished(stubs, run) == {"answer": "teal", "answer_type": "str"}

    fetched = review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id), timeout=10).approval
    assert fetched.status == RESPONDED and _value(fetched.decision.value) == "teal"
    listed = review.ListApprovals(rpb.ListApprovalsRequest(run_id=run.run_id, statuses=[RESPONDED]),
                                  timeout=10).approvals
    assert [a.approval_id for a in listed] == [approval.approval_id]
    record, = [r for r in list_audit(review, approval_id=approval.approval_id) if r.action == "approval_decided"]
    assert record.actor == "rosa"
    assert _value(record.details) == {"decision": "respond", "comment": "brand colour", "value": "teal"}

    # Review tools following the approval events see the value too.
    call = review.WatchApprovals(rpb.WatchApprovalsRequest(graph="respond_question", after_sequence=1), timeout=30)
    try:
        for response in call:
            event = response.event
            if event.WhichOneof("kind") == "decided" and event.approval.approval_id == approval.approval_id:
                assert event.approval.status == RESPONDED
                assert _value(event.approval.decision.value) == "teal"
                break
    finally:
        call.cancel()


@pytest.mark.parametrize("value, expected_type", [(None, "NoneType"), (3, "int"), ([1, {"a": None}], "list")],
                         ids=["null", "whole-number", "list"])
def test_any_json_value_arrives_as_given(stubs, value, expected_type):
    _, review = stubs
    run, approval = _waiting(stubs)
    decided = _respond(review, approval.approval_id, value)
    assert decided.status == RESPONDED and decided.decision.HasField("value")
    assert _finished(stubs, run) == {"answer": value, "answer_type": expected_type}


def test_a_human_interrupt_answered_with_a_raw_human_response(stubs):
    _, review = stubs
    run, approval = _waiting(stubs, "respond_human_interrupt", {"subject": "the report"})
    assert approval.resume_shape == "human_interrupt"
    # An edit, which the request's config does not allow: a RESPOND passes what it is given.
    response = [{"type": "edit", "args": {"action": "send_email", "args": {"subject": "v2"}}}]
    _respond(review, approval.approval_id, response)
    values = _finished(stubs, run)
    assert values["resumed"] == response[0]
    assert values["branch"] == "approve" and values["acted"] is True


def test_respond_twice_and_other_decisions_after_it(stubs):
    client, review = stubs
    run, approval = _waiting(stubs)
    first = _respond(review, approval.approval_id, {"n": 1})
    again = _respond(review, approval.approval_id, {"n": 1.0})  # the same JSON: the same answer
    assert again == first
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
        _respond(review, approval.approval_id, {"n": 2})
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
        _respond(review, approval.approval_id, {"n": True})
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
        decide(review, approval.approval_id, "approve", reviewer="rosa")
    assert _finished(stubs, run) == {"answer": {"n": 1}, "answer_type": "dict"}
    decisions = [r for r in list_audit(review, approval_id=approval.approval_id) if r.action == "approval_decided"]
    assert len(decisions) == 1


def test_respond_after_approve_is_refused(stubs):
    _, review = stubs
    run, approval = _waiting(stubs)
    decide(review, approval.approval_id, "approve", reviewer="rosa")
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED"):
        _respond(review, approval.approval_id, "teal")
    assert _finished(stubs, run) == {"answer": True, "answer_type": "bool"}  # plain shape: approve is True


def test_malformed_respond_requests(stubs):
    _, review = stubs
    _, approval = _waiting(stubs)
    bare = rpb.DecideRequest(approval_id=approval.approval_id, kind=rpb.DECISION_KIND_RESPOND)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "RESPOND_VALUE_REQUIRED"):
        review.Decide(bare, metadata=as_reviewer("rosa"), timeout=10)
    empty = rpb.DecideRequest(approval_id=approval.approval_id, kind=rpb.DECISION_KIND_RESPOND,
                              value=struct_pb2.Value())  # a Value with no kind is no JSON value
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "RESPOND_VALUE_REQUIRED"):
        review.Decide(empty, metadata=as_reviewer("rosa"), timeout=10)
    approve = rpb.DecideRequest(approval_id=approval.approval_id, kind=rpb.DECISION_KIND_APPROVE,
                                value=struct_pb2.Value(string_value="yes"))
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "VALUE_ONLY_FOR_RESPOND"):
        review.Decide(approve, metadata=as_reviewer("rosa"), timeout=10)
    edited = rpb.DecideRequest(approval_id=approval.approval_id, kind=rpb.DECISION_KIND_RESPOND,
                               value=struct_pb2.Value(string_value="yes"))
    edited.edited_value.update({"a": 1})
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        review.Decide(edited, metadata=as_reviewer("rosa"), timeout=10)
    still = review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id), timeout=10).approval
    assert still.status == rpb.APPROVAL_STATUS_PENDING


def test_cli_respond(rmesh, stubs):
    run, approval = _waiting(stubs)
    done = subprocess.run([*CLI, "--api", rmesh.api_address, "approvals", "--review", rmesh.review_address,
                           "--as", "rosa", "respond",
                           approval.approval_id, "--value", '"navy"', "--comment", "from the CLI"],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "RESPONDED" in done.stdout and '"navy"' in done.stdout
    assert _finished(stubs, run) == {"answer": "navy", "answer_type": "str"}


def test_a_record_is_decided_never_responded(rmesh, stubs):
    """A record-shaped approval resumes with graphmesh's decision record (the reviewer graph
    code trusts): a RESPOND, which would let the decider write it, is refused; APPROVE gives
    the graph the record naming the real reviewer."""
    _, review = stubs
    run, approval = _waiting(stubs)
    # A graph's node policy asks for the record with `resume: record` (as approvals recorded
    # before resume shapes existed keep it); this module's graph asks plain, so set it here.
    with psycopg.connect(rmesh.database_url, autocommit=True) as conn:
        conn.execute("UPDATE gm_approvals SET resume_shape = 'record' WHERE approval_id = %s",
                     (approval.approval_id,))
    forged = {"approved": True, "decision": "approve", "edited_value": None, "comment": "",
              "reviewer": "ceo", "expired": False}
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "RESPOND_NOT_FOR_RECORD"):
        _respond(review, approval.approval_id, forged)
    still = review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id), timeout=10).approval
    assert (still.status, still.resume_shape) == (rpb.APPROVAL_STATUS_PENDING, "record")
    decide(review, approval.approval_id, "approve", reviewer="rosa")
    values = _finished(stubs, run)
    assert values["answer"]["reviewer"] == "rosa" and values["answer"]["approved"] is True
