"""Searching review history and the audit trail (ListApprovals and ListAuditRecords filters,
`graphmesh approvals list` and `graphmesh audit` options), against the session mesh.

One module fixture records a small history: three decided approval_workflow runs on two
threads, decided by two reviewers, and a parallel_review run whose finance and legal
approvals stay pending. Reviewer names and threads are unique to this module, so what
other modules record on the shared mesh does not show up in these searches.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf import timestamp_pb2

from graphmesh.client import review_stub
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    WAITING,
    as_reviewer,
    create_run,
    decide,
    list_approvals,
    list_audit,
    new_thread,
    rpc_error,
    to_dict,
    wait_approvals,
    wait_status,
)

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
PENDING = rpb.APPROVAL_STATUS_PENDING
REJECTED = rpb.APPROVAL_STATUS_REJECTED
REFUND = {"action": "refund", "target": "cust-search", "amount": 12.0}


@pytest.fixture(scope="module")
def review(mesh):
    return review_stub(mesh.review_address)


def _decided(client, review, thread_id: str, kind: str, reviewer: str):
    """An approval_workflow run on `thread_id`, its approval decided by `reviewer`, run finished."""
    run = create_run(client, "approval_workflow", REFUND, thread_id=thread_id)
    wait_status(client, run.run_id, WAITING)
    [approval] = wait_approvals(review, run.run_id, 1, PENDING)
    decide(review, approval.approval_id, kind, reviewer=reviewer, comment=f"{kind} by {reviewer}")
    wait_status(client, run.run_id, COMPLETED)
    return review.GetApproval(rpb.GetApprovalRequest(approval_id=approval.approval_id), timeout=10).approval


@pytest.fixture(scope="module")
def history(client, review):
    tag = uuid.uuid4().hex[:8]
    h = SimpleNamespace(ana=f"ana-{tag}", ben=f"ben-{tag}", thread_a=new_thread("search-a"),
                        thread_b=new_thread("search-b"), thread_c=new_thread("search-c"))
    # Oldest first: a1 and a2 on thread A, a3 on thread B.
    h.a1 = _decided(client, review, h.thread_a, "approve", h.ana)
    h.a2 = _decided(client, review, h.thread_a, "reject", h.ben)
    h.a3 = _decided(client, review, h.thread_b, "approve", h.ben)
    h.queue_run = create_run(client, "parallel_review", {"request": "search"}, thread_id=h.thread_c)
    wait_status(client, h.queue_run.run_id, WAITING)
    pending = wait_approvals(review, h.queue_run.run_id, 2, PENDING)
    h.by_role = {a.required_role: a for a in pending}
    assert set(h.by_role) == {"finance", "legal"}, h.by_role
    yield h
    for approval in pending:
        decide(review, approval.approval_id, "approve", reviewer=h.ana)
    wait_status(client, h.queue_run.run_id, COMPLETED)


def ids(approvals) -> list[str]:
    return [a.approval_id for a in approvals]


def at(ts: timestamp_pb2.Timestamp, delta: timedelta = timedelta()) -> timestamp_pb2.Timestamp:
    moved = timestamp_pb2.Timestamp()
    moved.FromDatetime(ts.ToDatetime() + delta)
    return moved




def brief(records) -> list[tuple[str, str, str]]:
    return [(r.action, r.actor, r.approval_id) for r in records]


# -- ListApprovals ----------------------------------------------------------------------------


def test_approvals_by_thread(review, history):
    h = history
    assert ids(list_approvals(review, thread_id=h.thread_a)) == [h.a2.approval_id, h.a1.approval_id]
    assert ids(list_approvals(review, thread_id=h.thread_b)) == [h.a3.approval_id]
    assert ids(list_approvals(review, thread_id=h.thread_a, statuses=[REJECTED])) == [h.a2.approval_id]
    assert list_approvals(review, thread_id=h.thread_a, graph="parallel_review") == []
    # A thread id is text, whatever it looks like: no match is an empty page, not an error.
    assert list_approvals(review, thread_id="no such thread / ✓") == []
    assert list_approvals(review, thread_id=str(uuid.uuid4())) == []


def test_approvals_by_reviewer_with_paging(review, history):
    h = history
    assert ids(list_approvals(review, reviewer=h.ana)) == [h.a1.approval_id]
    both = list_approvals(review, reviewer=h.ben)
    assert ids(both) == [h.a3.approval_id, h.a2.approval_id]
    assert all(a.decision.reviewer == h.ben for a in both)
    assert ids(list_approvals(review, reviewer=h.ben, thread_id=h.thread_a)) == [h.a2.approval_id]
    assert list_approvals(review, reviewer=f"nobody-{uuid.uuid4()}") == []
    # Page by page: the keyset token carries the filters' order on, every approval once.
    first = review.ListApprovals(rpb.ListApprovalsRequest(reviewer=h.ben, page_size=1), timeout=10)
    assert ids(first.approvals) == [h.a3.approval_id] and first.next_page_token
    second = review.ListApprovals(rpb.ListApprovalsRequest(reviewer=h.ben, page_size=1,
                                                           page_token=first.next_page_token), timeout=10)
    assert ids(second.approvals) == [h.a2.approval_id] and not second.next_page_token
    assert ids(list_approvals(review, page_size=1, reviewer=h.ben)) == ids(both)


def test_queue_by_graph_role_and_age(review, history):
    h = history
    finance, legal = h.by_role["finance"], h.by_role["legal"]
    queue = dict(statuses=[PENDING], graph="parallel_review")
    assert ids(list_approvals(review, thread_id=h.thread_c, required_role="finance", **queue)) == \
        [finance.approval_id]
    assert ids(list_approvals(review, thread_id=h.thread_c, required_role="legal", **queue)) == [legal.approval_id]
    everyone_finance = list_approvals(review, required_role="finance", **queue)
    assert finance.approval_id in ids(everyone_finance)
    assert legal.approval_id not in ids(everyone_finance)
    assert all(a.required_role == "finance" and a.status == PENDING and a.graph == "parallel_review"
               for a in everyone_finance)
    assert ids(list_approvals(review, thread_id=h.thread_a, required_role="reviewer")) == \
        [h.a2.approval_id, h.a1.approval_id]
    assert list_approvals(review, thread_id=h.thread_a, required_role="finance") == []
    # "Waiting longer than N": created before now - N. Bounds are [created_after, created_before).
    assert list_approvals(review, thread_id=h.thread_c, required_role="finance",
                          created_before=finance.created_at, **queue) == []
    assert ids(list_approvals(review, thread_id=h.thread_c, required_role="finance",
                              created_before=at(finance.created_at, timedelta(microseconds=1)), **queue)) == \
        [finance.approval_id]


def test_approvals_by_creation_time(review, history):
    h = history
    a1, a2 = h.a1, h.a2
    assert a1.created_at.ToDatetime() < a2.created_at.ToDatetime()
    on_a = dict(thread_id=h.thread_a)
    assert ids(list_approvals(review, created_after=a2.created_at, **on_a)) == [a2.approval_id]
    assert ids(list_approvals(review, created_before=a2.created_at, **on_a)) == [a1.approval_id]
    assert ids(list_approvals(review, created_after=a1.created_at, created_before=a2.created_at, **on_a)) == \
        [a1.approval_id]
    assert list_approvals(review, created_after=a2.created_at, created_before=a2.created_at, **on_a) == []
    # Across threads: a3 came after a2.
    later = list_approvals(review, reviewer=h.ben, created_after=at(a2.created_at, timedelta(microseconds=1)))
    assert ids(later) == [h.a3.approval_id]
    window = list_approvals(review, page_size=1, created_after=a1.created_at,
                            created_before=at(h.a3.created_at, timedelta(microseconds=1)))
    assert {a1.approval_id, a2.approval_id, h.a3.approval_id} <= set(ids(window))
    assert all(a1.created_at.ToDatetime() <= a.created_at.ToDatetime() <= h.a3.created_at.ToDatetime()
               for a in window)
    created = [a.created_at.ToDatetime() for a in window]
    assert created == sorted(created, reverse=True)


def test_time_ranges_that_cannot_match_are_refused(review, history):
    h = history
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT) as info:
        review.ListApprovals(rpb.ListApprovalsRequest(created_after=h.a2.created_at, created_before=h.a1.created_at),
                             timeout=10)
    assert "created_after" in info["details"] and "created_before" in info["details"], info["details"]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT) as info:
        review.ListAuditRecords(rpb.ListAuditRecordsRequest(time_after=h.a2.created_at, time_before=h.a1.created_at),
                                timeout=10)
    assert "time_after" in info["details"] and "time_before" in info["details"], info["details"]
    # A Timestamp outside protobuf's range (years 1 to 9999) is refused, not a server error.
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT) as info:
        review.ListApprovals(rpb.ListApprovalsRequest(created_after=timestamp_pb2.Timestamp(seconds=10**12)),
                             timeout=10)
    assert "created_after" in info["details"], info["details"]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        review.ListAuditRecords(rpb.ListAuditRecordsRequest(time_before=timestamp_pb2.Timestamp(nanos=-1)),
                                timeout=10)


# -- ListAuditRecords -------------------------------------------------------------------------


def test_audit_by_thread_in_both_orders(review, history):
    h = history
    records = list_audit(review, thread_id=h.thread_a)
    assert brief(records) == [
        ("approval_requested", "system:worker", h.a1.approval_id),
        ("approval_decided", h.ana, h.a1.approval_id),
        ("approval_requested", "system:worker", h.a2.approval_id),
        ("approval_decided", h.ben, h.a2.approval_id)]
    assert {r.run_id for r in records} == {h.a1.run_id, h.a2.run_id}
    newest = list_audit(review, thread_id=h.thread_a, newest_first=True)
    assert newest == records[::-1]
    # Page tokens continue in the order asked for: one record a page, oldest and newest first.
    assert list_audit(review, page_size=1, thread_id=h.thread_a) == records
    assert list_audit(review, page_size=1, thread_id=h.thread_a, newest_first=True) == records[::-1]
    first = review.ListAuditRecords(rpb.ListAuditRecordsRequest(thread_id=h.thread_a, page_size=3,
                                                                newest_first=True), timeout=10)
    assert list(first.records) == records[:0:-1] and first.next_page_token == records[1].record_id
    assert list_audit(review, thread_id=f"no-such-thread-{uuid.uuid4()}") == []


def test_audit_by_actor(review, history):
    h = history
    bens = list_audit(review, actor=h.ben)
    assert brief(bens) == [("approval_decided", h.ben, h.a2.approval_id),
                           ("approval_decided", h.ben, h.a3.approval_id)]
    assert to_dict(bens[0].details)["decision"] == "reject"
    assert list_audit(review, actor=h.ben, newest_first=True) == bens[::-1]
    assert list_audit(review, actor=h.ben, page_size=1, newest_first=True) == bens[::-1]
    assert brief(list_audit(review, actor=h.ben, thread_id=h.thread_b)) == \
        [("approval_decided", h.ben, h.a3.approval_id)]
    assert brief(list_audit(review, actor="system:worker", thread_id=h.thread_b)) == \
        [("approval_requested", "system:worker", h.a3.approval_id)]
    assert list_audit(review, actor=h.ana, run_id=h.a3.run_id) == []
    # The newest record of a busy actor comes first without reading the whole trail.
    [latest] = review.ListAuditRecords(rpb.ListAuditRecordsRequest(actor="system:worker", page_size=1,
                                                                   newest_first=True), timeout=10).records
    assert int(latest.record_id) >= int(list_audit(review, thread_id=h.thread_c)[-1].record_id)


def test_audit_by_time(review, history):
    h = history
    r = list_audit(review, thread_id=h.thread_a)
    times = [x.time.ToDatetime() for x in r]
    assert times == sorted(times) and len(set(times)) == len(times), times
    on_a = dict(thread_id=h.thread_a)
    assert list_audit(review, time_after=r[2].time, **on_a) == r[2:]
    assert list_audit(review, time_before=r[2].time, **on_a) == r[:2]
    assert list_audit(review, time_after=r[1].time, time_before=r[3].time, **on_a) == r[1:3]
    assert list_audit(review, page_size=1, newest_first=True, time_after=r[1].time, time_before=r[3].time,
                      **on_a) == r[2:0:-1]
    assert list_audit(review, time_after=r[1].time, time_before=r[1].time, **on_a) == []
    # Time and actor across threads: ben's decisions from a2's on.
    assert brief(list_audit(review, actor=h.ben, time_after=r[3].time)) == \
        [("approval_decided", h.ben, h.a2.approval_id), ("approval_decided", h.ben, h.a3.approval_id)]


def test_audit_of_a_purged_thread_is_its_purge_record(client, review):
    thread = new_thread("search-purge")
    approval = _decided(client, review, thread, "approve", "purge-reviewer")
    assert [r.action for r in list_audit(review, thread_id=thread)] == ["approval_requested", "approval_decided"]
    client.runs.PurgeThread(pb.PurgeThreadRequest(thread_id=thread, reason="deletion request #7"),
                            metadata=as_reviewer("ops-search"), timeout=60)
    [record] = list_audit(review, thread_id=thread)
    assert record.action == "thread_purged" and record.actor == "ops-search" and not record.run_id
    details = to_dict(record.details)
    assert details["thread_id"] == thread and details["reason"] == "deletion request #7"
    assert list_audit(review, run_id=approval.run_id) == []


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gm_review(mesh):
    def run(*args: str) -> subprocess.CompletedProcess:
        # --review goes right after the command group (`approvals --review X list`, `audit --review X`).
        argv = [*CLI, "--api", mesh.api_address, args[0], "--review", mesh.review_address, *args[1:]]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    return run


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_cli_search_options(gm_review, history):
    h = history

    def approvals(*args: str) -> list[str]:
        return [a["approval_id"] for a in json.loads(_ok(gm_review("approvals", "list", "--json", *args)))
                .get("approvals", [])]

    def audit(*args: str) -> list[tuple[str, str]]:
        return [(r["action"], r["actor"]) for r in json.loads(_ok(gm_review("audit", "--json", *args)))
                .get("records", [])]

    assert approvals("--thread", h.thread_a) == [h.a2.approval_id, h.a1.approval_id]
    assert approvals("--thread", h.thread_a, "--reviewer", h.ben) == [h.a2.approval_id]
    assert approvals("--reviewer", h.ben, "--since", "1h") == [h.a3.approval_id, h.a2.approval_id]
    assert approvals("--reviewer", h.ben, "--until", "1h") == []
    since = h.a2.created_at.ToJsonString()  # ISO 8601 with Z
    assert approvals("--reviewer", h.ben, "--since", since) == [h.a3.approval_id, h.a2.approval_id]
    assert approvals("--reviewer", h.ben, "--until", since) == []
    assert approvals("--status", "pending", "--graph", "parallel_review", "--role", "legal",
                     "--thread", h.thread_c, "--until", "0s") == [h.by_role["legal"].approval_id]

    assert audit("--thread", h.thread_a, "--actor", h.ben) == [("approval_decided", h.ben)]
    assert audit("--thread", h.thread_a, "--newest-first", "--since", "1h") == [
        ("approval_decided", h.ben), ("approval_requested", "system:worker"),
        ("approval_decided", h.ana), ("approval_requested", "system:worker")]
    assert audit("--thread", h.thread_a, "--until", "1h") == []
    table = _ok(gm_review("audit", "--thread", h.thread_a, "--newest-first", "--limit", "1"))
    assert h.ben in table and table.rstrip().splitlines()[-1].endswith("--newest-first"), table

    refused = gm_review("approvals", "list", "--since", "yesterday")
    assert refused.returncode == 2 and "not a time: 'yesterday'" in refused.stderr, refused.stderr
    backwards = gm_review("audit", "--since", "1h", "--until", "2h")
    assert backwards.returncode == 1 and backwards.stderr.startswith("error: INVALID_ARGUMENT"), backwards.stderr
