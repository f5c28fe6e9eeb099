"""What a LangGraph client holding only a submitter token (an app's token) may do with its own
runs, and how a resume value becomes a decision, on a token mesh of the module's own with a
gateway.

- CancelRun: a submitter cancels its own runs, not another's (operators as before).
- Decide: the run's owner answers an interrupt no node policy role guards (RESPOND, or the
  decision its value stands for), audited with "as_owner"; not another's run, not an approval
  with a required role; and an owner's APPROVE never lets a requires_approval node run.
- ListApprovals / GetApproval: a submitter sees the approvals of its own runs only.
- command.resume through the gateway: a reviewer's `true` on a plain-shaped guarded node is an
  APPROVE (the run completes); on a `record`-shaped one it stays a RESPOND (POLICY_VIOLATION).
- A thread waiting at interrupt() shows it in RemoteGraph's get_state().interrupts.

Principals: sam and sue submit; rita reviews every graph. Graphs (the manifest below): the
approval workflow (graphs/approval.py: its `review` node interrupts with a payload naming
`apply_change`, which mutates) with three node policies, and resume_graphs.py's plain graph
with none.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_sync_client

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    CANCELLED,
    COMPLETED,
    FAILED,
    WAITING,
    create_run,
    list_approvals,
    list_audit,
    private_mesh,
    rpc_error,
    thread_values,
    to_dict,
    wait_approvals,
    wait_resting,
    wait_status,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = f"""
graphs:
  - name: owner_plain              # a plain yes/no interrupt, no node policy
    version: "1"
    path: {FIXTURES / "resume_graphs.py"}:plain
    limits: {{run_timeout_seconds: 120}}
  - name: guarded_no_role          # requires_approval without a role: the approval records no guard
    version: "1"
    path: graphs.approval:graph
    limits: {{run_timeout_seconds: 120}}
    nodes: {{apply_change: {{mutates: true, requires_approval: true, resume: plain}}}}
  - name: guarded_plain            # a reviewer's role, answered true / false
    version: "1"
    path: graphs.approval:graph
    limits: {{run_timeout_seconds: 120}}
    nodes: {{apply_change: {{mutates: true, requires_approval: true, role: reviewer, resume: plain}}}}
  - name: approval_workflow        # as graphmesh/examples.yaml declares it: the decision record
    version: "1"
    path: graphs.approval:graph
    limits: {{run_timeout_seconds: 120}}
    nodes: {{apply_change: {{mutates: true, requires_approval: true, role: reviewer, resume: record}}}}
"""
CHANGE = {"action": "refund", "target": "order-5", "amount": 5, "requested_by": "sam"}
DENIED = grpc.StatusCode.PERMISSION_DENIED
RESPOND, APPROVE, EDIT = rpb.DECISION_KIND_RESPOND, rpb.DECISION_KIND_APPROVE, rpb.DECISION_KIND_EDIT
HTTP_TIMEOUT = 60.0  # bounds a hung call; not a timing assertion


class Principal:
    def __init__(self, mesh, name: str, roles: list[str]) -> None:
        self.name = name
        _, self.token = mesh.create_token(name, roles, ["*"], created_by="test_owner_decisions")
        self.api = api_client(mesh.api_address, self.token)
        self.review = review_stub(mesh.review_address, self.token)
        self.sdk = get_sync_client(url=mesh.gateway_url, api_key=self.token, timeout=HTTP_TIMEOUT)

    def close(self) -> None:
        self.api.close()


@pytest.fixture(scope="module")
def omesh(tmp_path_factory):
    manifest = tmp_path_factory.mktemp("owner") / "graphmesh.yaml"
    manifest.write_text(MANIFEST)
    with private_mesh("owner-decisions", manifest=manifest, auth="token", workers=1, gateway_port=0) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def who(omesh):
    people = {name: Principal(omesh, name, roles) for name, roles in
              (("sam", ["submitter"]), ("sue", ["submitter"]), ("rita", ["reviewer"]))}
    yield people
    for p in people.values():
        p.close()


def waiting(owner: Principal, graph: str, inputs: dict, reviewer: Principal):
    """A run of `owner`'s waiting at its interrupt, and its approval."""
    run = create_run(owner.api, graph, inputs, thread_id=f"{owner.name}-{uuid.uuid4()}")
    wait_status(owner.api, run.run_id, WAITING)
    (approval,) = wait_approvals(reviewer.review, run.run_id, 1)
    return run, approval


def respond(caller: Principal, approval_id: str, value, **fields):
    request = rpb.DecideRequest(approval_id=approval_id, kind=RESPOND, **fields)
    request.value.bool_value = value
    return caller.review.Decide(request, timeout=30).approval


# -- CancelRun ------------------------------------------------------------------------------

def test_a_submitter_cancels_its_own_run_not_anothers(who):
    sam, sue, rita = who["sam"], who["sue"], who["rita"]
    run, _ = waiting(sam, "owner_plain", {"subject": "cancel me"}, rita)
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        sue.api.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="not mine"), timeout=10)
    with rpc_error(DENIED, "ROLE_REQUIRED"):  # retrying and resuming stay an operator's
        sam.api.runs.RetryRun(pb.RetryRunRequest(run_id=run.run_id), timeout=10)
    assert wait_status(sam.api, run.run_id, WAITING).status == WAITING
    cancelled = sam.api.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="changed my mind"),
                                       timeout=30).run
    assert cancelled.status == CANCELLED

    # Through the gateway (LangGraph's POST /threads/{id}/runs/{run_id}/cancel), with the app's token.
    thread = sam.sdk.threads.create()
    started = sam.sdk.runs.create(thread["thread_id"], "owner_plain", input={"subject": "via the gateway"})
    wait_status(sam.api, started["run_id"], WAITING)
    with pytest.raises(Exception) as refused:
        sue.sdk.runs.cancel(thread["thread_id"], started["run_id"])
    assert getattr(refused.value, "response", None) is not None and refused.value.response.status_code in (403, 404)
    sam.sdk.runs.cancel(thread["thread_id"], started["run_id"], wait=True)
    assert wait_status(sam.api, started["run_id"], CANCELLED).status == CANCELLED


# -- Decide ---------------------------------------------------------------------------------

def test_a_submitter_answers_its_own_unguarded_interrupt(who):
    sam, sue, rita = who["sam"], who["sue"], who["rita"]
    run, approval = waiting(sam, "owner_plain", {"subject": "the memo"}, rita)
    assert (approval.required_role, approval.resume_shape) == ("", "plain")
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        respond(sue, approval.approval_id, True)
    # An owner answers; it does not review: an EDIT stands for no value a client could send.
    edit = rpb.DecideRequest(approval_id=approval.approval_id, kind=EDIT)
    edit.edited_value.update({"subject": "another memo"})
    with rpc_error(DENIED, "ROLE_REQUIRED"):
        sam.review.Decide(edit, timeout=10)
    decided = respond(sam, approval.approval_id, True, comment="send it")
    assert decided.status == rpb.APPROVAL_STATUS_RESPONDED and decided.decision.reviewer == "sam"
    wait_status(sam.api, run.run_id, COMPLETED)
    assert thread_values(sam.api, run.thread_id)["acted"] is True
    (record,) = [r for r in list_audit(rita.review, run_id=run.run_id) if r.action == "approval_decided"]
    assert record.actor == "sam" and to_dict(record.details)["as_owner"] is True


def test_a_submitter_cannot_answer_a_role_guarded_interrupt(who):
    sam, rita = who["sam"], who["rita"]
    run, approval = waiting(sam, "guarded_plain", CHANGE, rita)
    assert approval.required_role == "reviewer"
    with rpc_error(DENIED, "ROLE_REQUIRED") as refused:
        respond(sam, approval.approval_id, True)
    assert "guarded" in refused["details"]
    with rpc_error(DENIED, "ROLE_REQUIRED"):
        sam.review.Decide(rpb.DecideRequest(approval_id=approval.approval_id, kind=APPROVE), timeout=10)
    # Through the gateway, the same refusal (a 403); the run keeps waiting for a reviewer.
    with pytest.raises(Exception) as caught:
        sam.sdk.runs.create(run.thread_id, "guarded_plain", command={"resume": True})
    assert caught.value.response.status_code == 403
    assert rita.review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id),
                                   timeout=10).approval.status == rpb.APPROVAL_STATUS_PENDING
    sam.api.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="done"), timeout=30)


def test_an_owners_approval_never_lets_a_guarded_node_run(who):
    """requires_approval without a role is not recorded on the approval, so the owner may
    answer it; its APPROVE (a LangGraph `true`) is audited as the owner's, and the node
    policy gate does not count it: the mutating node is refused."""
    sam, rita = who["sam"], who["rita"]
    thread = sam.sdk.threads.create()
    run = sam.sdk.runs.create(thread["thread_id"], "guarded_no_role", input=CHANGE)
    wait_status(sam.api, run["run_id"], WAITING)
    (approval,) = wait_approvals(rita.review, run["run_id"], 1)
    assert (approval.required_role, approval.resume_shape) == ("", "plain")
    sam.sdk.runs.create(thread["thread_id"], "guarded_no_role", command={"resume": True})
    failed = wait_resting(sam.api, run["run_id"])
    assert (failed.status, failed.error.code, failed.error.node) == (FAILED, "POLICY_VIOLATION", "apply_change")
    decided = rita.review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id), timeout=10).approval
    assert (decided.status, decided.decision.kind, decided.decision.reviewer) == (
        rpb.APPROVAL_STATUS_APPROVED, APPROVE, "sam")
    (record,) = [r for r in list_audit(rita.review, run_id=run["run_id"]) if r.action == "approval_decided"]
    assert to_dict(record.details)["as_owner"] is True


# -- seeing approvals ---------------------------------------------------------------------------

def test_a_submitter_sees_only_the_approvals_of_its_own_runs(who):
    sam, sue, rita = who["sam"], who["sue"], who["rita"]
    sams, sams_approval = waiting(sam, "owner_plain", {"subject": "sam's"}, rita)
    sues, sues_approval = waiting(sue, "owner_plain", {"subject": "sue's"}, rita)
    try:
        pending = [rpb.APPROVAL_STATUS_PENDING]
        seen = {a.approval_id: a for a in list_approvals(sam.review, statuses=pending)}
        assert sams_approval.approval_id in seen and sues_approval.approval_id not in seen
        assert {a.run_id for a in list_approvals(sam.review)} <= {
            r.run_id for r in sam.api.runs.ListRuns(pb.ListRunsRequest(page_size=1000), timeout=10).runs}
        assert list_approvals(sam.review, thread_id=sues.thread_id) == []
        (mine,) = list_approvals(sam.review, thread_id=sams.thread_id, statuses=pending)
        assert mine.approval_id == sams_approval.approval_id
        assert sam.review.GetApproval(rpb.GetApprovalRequest(approval_id=sams_approval.approval_id),
                                      timeout=10).approval.run_id == sams.run_id
        with rpc_error(DENIED, "NOT_YOUR_RUN"):
            sam.review.GetApproval(rpb.GetApprovalRequest(approval_id=sues_approval.approval_id), timeout=10)
        # A reviewer sees both; watching stays a reviewer's.
        every = {a.approval_id for a in list_approvals(rita.review, statuses=pending)}
        assert {sams_approval.approval_id, sues_approval.approval_id} <= every
        with rpc_error(DENIED, "ROLE_REQUIRED"):
            list(sam.review.WatchApprovals(rpb.WatchApprovalsRequest(), timeout=5))
    finally:
        for owner, run in ((sam, sams), (sue, sues)):
            owner.api.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="done"), timeout=30)


# -- command.resume as a decision --------------------------------------------------------------

def test_a_reviewer_approves_a_guarded_node_from_a_langgraph_client(who):
    sam, rita = who["sam"], who["rita"]
    thread = sam.sdk.threads.create()
    run = sam.sdk.runs.create(thread["thread_id"], "guarded_plain", input=CHANGE)
    joined = sam.sdk.runs.join(thread["thread_id"], run["run_id"])
    assert joined["__interrupt__"][0]["value"]["node"] == "apply_change"

    # The reviewer's LangGraph client answers `true`: in the plain shape that is exactly what
    # an APPROVE resumes with, so the review tier records an APPROVE and the node may run.
    done = rita.sdk.runs.wait(thread["thread_id"], "guarded_plain", command={"resume": True})
    assert done["applied"] is True and done["decision"] == "approved", done
    assert wait_resting(sam.api, run["run_id"]).status == COMPLETED
    (approval,) = list_approvals(rita.review, run_id=run["run_id"])
    assert (approval.status, approval.decision.kind, approval.decision.reviewer) == (
        rpb.APPROVAL_STATUS_APPROVED, APPROVE, "rita")
    (record,) = [r for r in list_audit(rita.review, run_id=run["run_id"]) if r.action == "approval_decided"]
    assert record.actor == "rita" and "as_owner" not in to_dict(record.details)


def test_a_record_shaped_approval_is_decided_never_responded(who):
    """The record names its reviewer and decision: no client value may stand in for it. A raw
    value is refused (nothing recorded); {"decision": "approve"} is the reviewer's APPROVE,
    which the guarded node accepts."""
    sam, rita = who["sam"], who["rita"]
    thread = sam.sdk.threads.create()
    run = sam.sdk.runs.create(thread["thread_id"], "approval_workflow", input=CHANGE)
    wait_status(sam.api, run["run_id"], WAITING)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        rita.sdk.runs.create(thread["thread_id"], "approval_workflow", command={"resume": True})
    assert refused.value.response.status_code == 422 and "decision" in refused.value.response.text
    (approval,) = list_approvals(rita.review, run_id=run["run_id"])
    assert approval.status == rpb.APPROVAL_STATUS_PENDING
    rita.sdk.runs.create(thread["thread_id"], "approval_workflow", command={"resume": {"decision": "approve"}})
    done = wait_resting(sam.api, run["run_id"])
    assert done.status == COMPLETED, done.error.message
    (approval,) = list_approvals(rita.review, run_id=run["run_id"])
    assert (approval.status, approval.resume_shape, approval.decision.reviewer) == (
        rpb.APPROVAL_STATUS_APPROVED, "record", "rita")


# -- state ---------------------------------------------------------------------------------------

def test_remote_graph_get_state_shows_the_pending_interrupt(omesh, who):
    sam, rita = who["sam"], who["rita"]
    run, approval = waiting(sam, "owner_plain", {"subject": "the state"}, rita)
    try:
        remote = RemoteGraph("owner_plain", url=omesh.gateway_url, api_key=sam.token)
        state = remote.get_state({"configurable": {"thread_id": run.thread_id}})
        assert state.next == ("ask",)
        assert [i.id for i in state.interrupts] == [approval.interrupt_id]
        assert state.interrupts[0].value == {"question": "Send the state?"}
        (task,) = state.tasks
        assert task.name == "ask" and [i.id for i in task.interrupts] == [approval.interrupt_id]
        snapshot = sam.api.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=run.thread_id),
                                               timeout=10).snapshot
        assert [(i.interrupt_id, i.approval_id, i.run_id) for i in snapshot.interrupts] == [
            (approval.interrupt_id, approval.approval_id, run.run_id)]
    finally:
        sam.api.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="done"), timeout=30)

