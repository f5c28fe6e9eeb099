"""Authentication and authorization end to end, on a private mesh with GRAPHMESH_AUTH=token.

Principals (static tokens made with Mesh.create_token):
  sam   submitter, all graphs          sue   submitter, all graphs
  nate  submitter, tiny only           rita  reviewer, approval_workflow only
  fin   reviewer + finance, all graphs olga  operator, tiny only
  ada   admin
plus JWTs signed with the mesh's GRAPHMESH_JWT_SECRET.

Tests run in file order and share runs through module fixtures; the one that asks a
worker to drain (and must be refused) is last.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field

import grpc
import jwt
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from graphmesh.auth.tokens import JWT_AUDIENCE, issue_jwt
from graphmesh.client import ApiClient, channel
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    graph_service_pb2,
    graph_service_pb2_grpc,
    review_service_pb2,
    review_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from helpers import (
    CANCELLED,
    COMPLETED,
    WAITING,
    create_run,
    get_run,
    list_all_runs,
    new_thread,
    private_mesh,
    rpc_error,
    stream_events,
    struct,
    to_dict,
    wait_approvals,
    wait_for,
    wait_status,
)

pb = run_service_pb2
gpb = graph_service_pb2
rpb = review_service_pb2
apb = auth_service_pb2
wpb = worker_service_pb2

PAUSED = run_pb2.RUN_STATUS_PAUSED
PENDING = rpb.APPROVAL_STATUS_PENDING
APPROVE = rpb.DECISION_KIND_APPROVE
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

JWT_SECRET = secrets.token_urlsafe(32)

GRANTS = {
    "sam": (["submitter"], ["*"]),
    "sue": (["submitter"], ["*"]),
    "nate": (["submitter"], ["tiny"]),
    "rita": (["reviewer"], ["approval_workflow"]),
    "fin": (["reviewer", "finance"], ["*"]),
    "olga": (["operator"], ["tiny"]),
    "ada": (["admin"], ["*"]),
}

APPROVAL_INPUT = {"action": "refund", "target": "order-17", "amount": 42, "reason": "damaged",
                  "requested_by": "sam"}


# -- the mesh and one set of clients per principal -----------------------------------------

@dataclass
class Caller:
    """Typed stubs for every service, all sending one principal's credentials."""

    name: str
    token: str
    token_id: str
    api: ApiClient
    review: review_service_pb2_grpc.ReviewServiceStub
    auth: auth_service_pb2_grpc.AuthServiceStub
    worker: worker_service_pb2_grpc.WorkerServiceStub
    channels: list = field(default_factory=list)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


def make_caller(mesh, name: str, token: str, token_id: str = "") -> Caller:
    api_ch, review_ch, worker_ch = (channel(mesh.api_address, token), channel(mesh.review_address, token),
                                    channel(mesh.worker_addresses[0], token))
    api = ApiClient(api_ch, run_service_pb2_grpc.RunServiceStub(api_ch),
                    graph_service_pb2_grpc.GraphServiceStub(api_ch))
    return Caller(name, token, token_id, api, review_service_pb2_grpc.ReviewServiceStub(review_ch),
                  auth_service_pb2_grpc.AuthServiceStub(api_ch), worker_service_pb2_grpc.WorkerServiceStub(worker_ch),
                  [api_ch, review_ch, worker_ch])


@pytest.fixture(scope="module")
def amesh():
    with private_mesh("auth", auth="token", workers=1, extra_env={"GRAPHMESH_JWT_SECRET": JWT_SECRET}) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def who(amesh):
    """name -> Caller, for every principal in GRANTS."""
    callers = {}
    for name, (roles, graphs) in GRANTS.items():
        token_id, token = amesh.create_token(name, roles, graphs, created_by="test_auth")
        callers[name] = make_caller(amesh, name, token, token_id)
    yield callers
    for c in callers.values():
        c.close()


@pytest.fixture(scope="module")
def anonymous(amesh):
    """Stubs on channels that send no credentials (pass metadata per call)."""
    c = make_caller(amesh, "anonymous", "")
    yield c
    c.close()


@pytest.fixture(scope="module")
def minted(who):
    """Plain tokens made during the module (via the API), for the no-plain-token checks."""
    return [c.token for c in who.values()]


def jwt_caller(mesh, token: str) -> Caller:
    return make_caller(mesh, "jwt", token)


# -- shared runs ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sams_tiny(who):
    """A completed tiny run of sam's, created while sam also claimed to be 'mallory'."""
    sam = who["sam"]
    thread = new_thread("sam")
    run = sam.api.runs.CreateRun(pb.CreateRunRequest(graph="tiny", thread_id=thread, input=struct({"text": "Sam Says"})),
                                 metadata=[("gm-principal", "mallory")], timeout=30).run
    return wait_status(sam.api, run.run_id, COMPLETED)


@pytest.fixture(scope="module")
def approvals(who):
    """An approval_workflow run and a parallel_review run of sam's, both waiting for approval."""
    sam, fin = who["sam"], who["fin"]
    aw = create_run(sam.api, "approval_workflow", APPROVAL_INPUT, thread_id=new_thread("aw"))
    pr = create_run(sam.api, "parallel_review", {"request": "new laptop", "amount": 1200},
                    thread_id=new_thread("pr"))
    wait_status(sam.api, aw.run_id, WAITING)
    wait_status(sam.api, pr.run_id, WAITING)
    (aw_approval,) = wait_approvals(fin.review, aw.run_id, 1, PENDING)
    pr_approvals = {a.required_role: a for a in wait_approvals(fin.review, pr.run_id, 2, PENDING)}
    assert set(pr_approvals) == {"finance", "legal"}, pr_approvals
    return {"aw_run": aw, "pr_run": pr, "aw": aw_approval, "finance": pr_approvals["finance"],
            "legal": pr_approvals["legal"]}


# -- authentication ------------------------------------------------------------------------

def test_health_and_reflection_need_no_token(amesh):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    for address in (amesh.api_address, amesh.review_address, *amesh.worker_addresses):
        with grpc.insecure_channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, address
            responses = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            names = {s.name for r in responses for s in r.list_services_response.service}
            assert any(n.startswith("graphmesh.v1.") for n in names), (address, names)


def _door_calls(anonymous: Caller):
    """One cheap call per service (unary and streaming), each taking metadata."""
    return {
        "WhoAmI": lambda md: anonymous.auth.WhoAmI(apb.WhoAmIRequest(), metadata=md, timeout=10),
        "ListRuns": lambda md: anonymous.api.runs.ListRuns(pb.ListRunsRequest(), metadata=md, timeout=10),
        "CreateRun": lambda md: anonymous.api.runs.CreateRun(
            pb.CreateRunRequest(graph="tiny", input=struct({"text": "x"})), metadata=md, timeout=10),
        "StreamRun": lambda md: list(anonymous.api.runs.StreamRun(
            pb.StreamRunRequest(run_id=str(uuid.uuid4())), metadata=md, timeout=10)),
        "ListGraphs": lambda md: anonymous.api.graphs.ListGraphs(gpb.ListGraphsRequest(), metadata=md, timeout=10),
        "ListApprovals": lambda md: anonymous.review.ListApprovals(rpb.ListApprovalsRequest(), metadata=md,
                                                                   timeout=10),
        "WatchApprovals": lambda md: list(anonymous.review.WatchApprovals(
            rpb.WatchApprovalsRequest(include_pending=True), metadata=md, timeout=10)),
        "GetWorkerStatus": lambda md: anonymous.worker.GetWorkerStatus(wpb.GetWorkerStatusRequest(), metadata=md,
                                                                       timeout=10),
        "CreateToken": lambda md: anonymous.auth.CreateToken(
            apb.CreateTokenRequest(principal="eve", roles=["admin"]), metadata=md, timeout=10),
    }


def _bad_credentials(who) -> dict[str, tuple[list, str]]:
    sam = who["sam"].token
    return {
        "none": ([], "MISSING_TOKEN"),
        "gm-principal only": ([("gm-principal", "ada")], "MISSING_TOKEN"),
        "garbage": ([("authorization", "Bearer garbage")], "INVALID_TOKEN"),
        "unknown static token": ([("authorization", f"Bearer gm_{'0' * 12}_{secrets.token_urlsafe(32)}")],
                                 "INVALID_TOKEN"),
        "tampered static token": ([("authorization", f"Bearer {sam[:-2]}xx")], "INVALID_TOKEN"),
        "wrong scheme": ([("authorization", f"Basic {sam}")], "INVALID_TOKEN"),
        "no scheme": ([("authorization", sam)], "INVALID_TOKEN"),
        "empty bearer": ([("authorization", "Bearer ")], "INVALID_TOKEN"),
        "jwt-shaped garbage": ([("authorization", "Bearer a.b.c")], "INVALID_TOKEN"),
    }


def test_bad_credentials_are_unauthenticated_everywhere(who, anonymous):
    calls = _door_calls(anonymous)
    failures = []
    for label, (metadata, gm_code) in _bad_credentials(who).items():
        for name, call in calls.items():
            try:
                call(metadata)
                failures.append(f"{label} / {name}: succeeded")
            except grpc.RpcError as err:
                if err.code() != UNAUTHENTICATED or error_code(err) != gm_code:
                    failures.append(f"{label} / {name}: {err.code().name} {error_code(err)} {err.details()}")
    assert not failures, "\n".join(failures)
    # And the same calls with sam's token do get past the door.
    assert who["sam"].auth.WhoAmI(apb.WhoAmIRequest(), timeout=10).principal == "sam"


def test_whoami_for_every_principal(who):
    for name, (roles, graphs) in GRANTS.items():
        c = who[name]
        me = c.auth.WhoAmI(apb.WhoAmIRequest(), metadata=[("gm-principal", "mallory")], timeout=10)
        assert (me.principal, list(me.roles), list(me.graphs), me.authenticated_by) == \
            (name, sorted(roles), sorted(graphs), f"token:{c.token_id}")


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {"sub": "jay", "roles": ["submitter"], "graphs": ["*"], "aud": JWT_AUDIENCE, "iat": now,
              "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_jwt_valid(amesh):
    token = issue_jwt(JWT_SECRET, "jay", ["submitter", "reviewer"], ["tiny"])
    jay = jwt_caller(amesh, token)
    try:
        me = jay.auth.WhoAmI(apb.WhoAmIRequest(), timeout=10)
        assert (me.principal, list(me.roles), list(me.graphs), me.authenticated_by) == \
            ("jay", ["reviewer", "submitter"], ["tiny"], "jwt")
        run = create_run(jay.api, "tiny", {"text": "by jwt"})
        assert run.owner == "jay"
        wait_status(jay.api, run.run_id, COMPLETED)
        jay.review.ListApprovals(rpb.ListApprovalsRequest(), timeout=10)  # the review tier verifies it too
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            create_run(jay.api, "research_assistant", {"question": "q"})
    finally:
        jay.close()


@pytest.mark.parametrize("token", [
    issue_jwt(JWT_SECRET, "jay", ["admin"], ttl_seconds=-30),
    jwt.encode(_claims(roles=["admin"], aud="someone-else"), JWT_SECRET, algorithm="HS256"),
    jwt.encode(_claims(roles=["admin"], aud=None), JWT_SECRET, algorithm="HS256"),
    issue_jwt(secrets.token_urlsafe(32), "jay", ["admin"]),
    jwt.encode(_claims(roles=["admin"], exp=None), JWT_SECRET, algorithm="HS256"),
    jwt.encode(_claims(roles=["admin"]), None, algorithm="none"),
    jwt.encode(_claims(roles="admin"), JWT_SECRET, algorithm="HS256"),
], ids=["expired", "wrong-audience", "no-audience", "wrong-key", "no-exp", "alg-none", "roles-not-a-list"])
def test_jwt_invalid(amesh, token):
    bad = jwt_caller(amesh, token)
    try:
        for call in (lambda: bad.auth.WhoAmI(apb.WhoAmIRequest(), timeout=10),
                     lambda: bad.review.ListApprovals(rpb.ListApprovalsRequest(), timeout=10),
                     lambda: bad.worker.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10)):
            with rpc_error(UNAUTHENTICATED, "INVALID_TOKEN"):
                call()
    finally:
        bad.close()


# -- the door: every RPC x every principal -------------------------------------------------

NOBODY = str(uuid.uuid4())

# method -> (request that names nothing real, roles admitted at the door). Admitted calls
# must be harmless: they name unknown graphs, runs, approvals, tokens.
DOOR = {
    "RunService/CreateRun": (pb.CreateRunRequest(graph="no_such_graph"), {"submitter", "operator"}),
    "RunService/InvokeRun": (pb.InvokeRunRequest(graph="no_such_graph"), {"submitter", "operator"}),
    "RunService/GetRun": (pb.GetRunRequest(run_id=NOBODY), {"submitter", "reviewer", "operator"}),
    "RunService/ListRuns": (pb.ListRunsRequest(thread_id=NOBODY), {"submitter", "reviewer", "operator"}),
    "RunService/StreamRun": (pb.StreamRunRequest(run_id=NOBODY), {"submitter", "reviewer", "operator"}),
    "RunService/GetThreadState": (pb.GetThreadStateRequest(thread_id=NOBODY), {"submitter", "reviewer", "operator"}),
    "RunService/GetRunTrace": (pb.GetRunTraceRequest(run_id=NOBODY), {"submitter", "reviewer", "operator"}),
    "RunService/CancelRun": (pb.CancelRunRequest(run_id=NOBODY), {"submitter", "operator"}),  # its own runs
    "RunService/RetryRun": (pb.RetryRunRequest(run_id=NOBODY), {"operator"}),
    "RunService/ResumeRun": (pb.ResumeRunRequest(run_id=NOBODY), {"operator"}),
    "RunService/PurgeThread": (None, {"submitter", "operator"}),  # request built from the descriptor (newer RPC)
    "RunService/DeleteRun": (pb.DeleteRunRequest(run_id=NOBODY, reason="x"), {"submitter", "operator"}),  # its own
    "GraphService/ListGraphs": (gpb.ListGraphsRequest(), {"submitter", "reviewer", "operator"}),
    "GraphService/GetGraph": (gpb.GetGraphRequest(graph="no_such_graph"), {"submitter", "reviewer", "operator"}),
    "GraphService/SetRollout": (gpb.SetRolloutRequest(graph="no_such_graph"), {"operator"}),
    "GraphService/RollbackGraph": (gpb.RollbackGraphRequest(graph="no_such_graph"), {"operator"}),
    "GraphService/DisableNode": (gpb.DisableNodeRequest(graph="no_such_graph", node="x", reason="r"), {"operator"}),
    "GraphService/EnableNode": (gpb.EnableNodeRequest(graph="no_such_graph", node="x"), {"operator"}),
    "GraphService/ListWorkers": (gpb.ListWorkersRequest(), {"operator"}),
    "GraphService/DescribeGraph": (gpb.DescribeGraphRequest(graph="no_such_graph"), {"submitter", "reviewer", "operator"}),
    # A submitter: the approvals of its own runs (the servicer checks; test_owner_decisions.py).
    "ReviewService/ListApprovals": (rpb.ListApprovalsRequest(run_id=NOBODY), {"reviewer", "submitter"}),
    "ReviewService/GetApproval": (rpb.GetApprovalRequest(approval_id=NOBODY), {"reviewer", "submitter"}),
    "ReviewService/WatchApprovals": (rpb.WatchApprovalsRequest(graph="no_such_graph"), {"reviewer"}),
    "ReviewService/Decide": (rpb.DecideRequest(approval_id=NOBODY, kind=APPROVE), {"reviewer", "submitter"}),
    "ReviewService/ListAuditRecords": (rpb.ListAuditRecordsRequest(run_id=NOBODY), {"reviewer", "operator"}),
    "WorkerService/GetWorkerStatus": (wpb.GetWorkerStatusRequest(), {"operator"}),
    # WorkerService/Drain: see test_drain_is_refused_to_non_operators (last: an admitted Drain drains).
    "AuthService/WhoAmI": (apb.WhoAmIRequest(), {"submitter", "reviewer", "operator"}),
    "AuthService/CreateToken": (apb.CreateTokenRequest(principal="not a valid name", roles=["submitter"]), set()),
    "AuthService/ListTokens": (apb.ListTokensRequest(), set()),
    "AuthService/RevokeToken": (apb.RevokeTokenRequest(token_id="no-such-token"), set()),
}


def _all_rpcs() -> dict[str, object]:
    """'Service/Method' -> method descriptor, for every graphmesh.v1 service."""
    out = {}
    for module in (run_service_pb2, graph_service_pb2, review_service_pb2, worker_service_pb2, auth_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out[f"{service.name}/{m.name}"] = m
    return out


def _address(mesh, service: str) -> str:
    return {"ReviewService": mesh.review_address, "WorkerService": mesh.worker_addresses[0]}.get(
        service, mesh.api_address)


def _raw_call(mesh, path: str, body: bytes, metadata, *, streaming: bool, timeout: float = 10):
    """Sends `body` as is to /graphmesh.v1.<path>; returns the status code (OK if it succeeded)."""
    with grpc.insecure_channel(_address(mesh, path.split("/")[0])) as ch:
        full = f"/graphmesh.v1.{path}"
        try:
            if streaming:
                call = ch.unary_stream(full)(body, metadata=metadata, timeout=timeout)
                for i, _ in enumerate(call):
                    if i >= 2:
                        call.cancel()
                        break
            else:
                ch.unary_unary(full)(body, metadata=metadata, timeout=timeout)
        except grpc.RpcError as err:
            return err.code(), error_code(err), err.details()
        return grpc.StatusCode.OK, "", ""


def test_door_table_covers_every_rpc():
    missing = sorted(set(_all_rpcs()) - set(DOOR) - {"WorkerService/Drain"})
    assert not missing, f"add the new RPCs to DOOR (and decide who may call them): {missing}"


def test_every_rpc_admits_exactly_its_roles(amesh, who):
    rpcs = _all_rpcs()
    wrong = []
    for path, (request, roles) in DOOR.items():
        if path not in rpcs:
            continue
        if request is None:
            from google.protobuf import message_factory

            request = message_factory.GetMessageClass(rpcs[path].input_type)()
            for f in rpcs[path].input_type.fields:
                if f.type == f.TYPE_STRING and not f.is_repeated:
                    setattr(request, f.name, NOBODY)
        body = request.SerializeToString()
        for name, (granted, _) in GRANTS.items():
            admitted = "admin" in granted or bool(roles & set(granted))
            code, gm_code, details = _raw_call(amesh, path, body, [("authorization", f"Bearer {who[name].token}")],
                                               streaming=rpcs[path].server_streaming, timeout=3)
            at_door = code == DENIED and gm_code in ("ROLE_REQUIRED", "METHOD_NOT_ALLOWED")
            if code in (UNAUTHENTICATED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) or at_door == admitted:
                wrong.append(f"{name} {path}: expected {'admitted' if admitted else 'refused'}, got "
                             f"{code.name} {gm_code}: {details}")
    assert not wrong, "\n".join(wrong)


# -- submitters ----------------------------------------------------------------------------

def test_submitter_sees_own_run(who, sams_tiny):
    sam = who["sam"]
    assert sams_tiny.owner == "sam"  # the token's principal, not the gm-principal it sent
    assert get_run(sam.api, sams_tiny.run_id).status == COMPLETED
    events = stream_events(sam.api, sams_tiny.run_id)
    assert events and events[-1].status_changed.status == COMPLETED
    state = sam.api.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=sams_tiny.thread_id), timeout=10)
    assert to_dict(state.values)["summary"].startswith("2 words")
    trace = wait_for(lambda: _trace_or_none(sam, sams_tiny.run_id), 20, message="a trace for sam's run")
    assert trace.spans
    assert sams_tiny.run_id in {r.run_id for r in list_all_runs(sam.api)}


def _trace_or_none(caller: Caller, run_id: str):
    try:
        reply = caller.api.runs.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id), timeout=10)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
        return None
    return reply if reply.spans else None


def test_other_submitter_cannot_see_the_run(who, sams_tiny):
    sue = who["sue"]
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        get_run(sue.api, sams_tiny.run_id)
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        stream_events(sue.api, sams_tiny.run_id)
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        sue.api.runs.GetRunTrace(pb.GetRunTraceRequest(run_id=sams_tiny.run_id), timeout=10)
    with rpc_error(DENIED, "NOT_YOUR_THREAD"):
        sue.api.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=sams_tiny.thread_id), timeout=10)


def test_list_runs_shows_only_own_runs(who, sams_tiny):
    sue = who["sue"]
    mine = create_run(sue.api, "tiny", {"text": "sue's own"})
    wait_status(sue.api, mine.run_id, COMPLETED)
    listed = list_all_runs(sue.api, page_size=7)
    assert mine.run_id in {r.run_id for r in listed}
    assert {r.owner for r in listed} == {"sue"}, {r.owner for r in listed}
    assert sams_tiny.run_id not in {r.run_id for r in listed}
    assert sams_tiny.run_id not in {r.run_id for r in list_all_runs(sue.api, thread_id=sams_tiny.thread_id)}
    assert list_all_runs(sue.api, graph="tiny", statuses=[COMPLETED]) and \
        all(r.owner == "sue" for r in list_all_runs(sue.api, graph="tiny", statuses=[COMPLETED]))


def test_narrowed_submitter_runs_only_its_graphs(who):
    nate = who["nate"]
    run = nate.api.runs.InvokeRun(pb.InvokeRunRequest(graph="tiny", input=struct({"text": "sync"})), timeout=30)
    assert run.run.owner == "nate" and run.run.status == COMPLETED
    for graph in ("research_assistant", "approval_workflow"):
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            create_run(nate.api, graph, APPROVAL_INPUT)


def test_submitter_cannot_operate_or_review(who, sams_tiny, approvals):
    """A submitter cancels, sees and answers only its own runs (test_owner_decisions.py),
    and never an approval its node policy gives a reviewer's role."""
    sam, sue = who["sam"], who["sue"]
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        sue.api.runs.CancelRun(pb.CancelRunRequest(run_id=approvals["aw_run"].run_id), timeout=10)
    with rpc_error(DENIED, "ROLE_REQUIRED"):
        sam.api.runs.RetryRun(pb.RetryRunRequest(run_id=sams_tiny.run_id), timeout=10)
    with rpc_error(DENIED, "ROLE_REQUIRED"):  # required_role "reviewer": not the owner's to decide
        sam.review.Decide(rpb.DecideRequest(approval_id=approvals["aw"].approval_id, kind=APPROVE), timeout=10)
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        sue.review.Decide(rpb.DecideRequest(approval_id=approvals["aw"].approval_id, kind=APPROVE), timeout=10)
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        sue.review.GetApproval(rpb.GetApprovalRequest(approval_id=approvals["aw"].approval_id), timeout=10)
    assert sam.review.GetApproval(rpb.GetApprovalRequest(approval_id=approvals["aw"].approval_id),
                                  timeout=10).approval.run_id == approvals["aw_run"].run_id
    with rpc_error(DENIED, "ROLE_REQUIRED"):
        sam.api.graphs.DisableNode(gpb.DisableNodeRequest(graph="tiny", node="count", reason="x"), timeout=10)
    assert get_run(sam.api, approvals["aw_run"].run_id).status == WAITING


# -- reviewers -----------------------------------------------------------------------------

def test_reviewer_lists_only_covered_approvals(who, approvals):
    rita, fin = who["rita"], who["fin"]
    listed = rita.review.ListApprovals(rpb.ListApprovalsRequest(page_size=1000), timeout=10).approvals
    assert approvals["aw"].approval_id in {a.approval_id for a in listed}
    assert {a.graph for a in listed} == {"approval_workflow"}
    narrowed = rita.review.ListApprovals(rpb.ListApprovalsRequest(graph="parallel_review"), timeout=10).approvals
    assert list(narrowed) == []
    by_run = rita.review.ListApprovals(rpb.ListApprovalsRequest(run_id=approvals["pr_run"].run_id), timeout=10)
    assert list(by_run.approvals) == []
    with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
        rita.review.GetApproval(rpb.GetApprovalRequest(approval_id=approvals["finance"].approval_id), timeout=10)
    assert rita.review.GetApproval(rpb.GetApprovalRequest(approval_id=approvals["aw"].approval_id),
                                   timeout=10).approval.graph == "approval_workflow"
    every = {a.approval_id for a in fin.review.ListApprovals(rpb.ListApprovalsRequest(page_size=1000),
                                                            timeout=10).approvals}
    assert {approvals[k].approval_id for k in ("aw", "finance", "legal")} <= every


def test_reviewer_sees_runs_of_covered_graphs_only(who, approvals, sams_tiny):
    rita = who["rita"]
    assert get_run(rita.api, approvals["aw_run"].run_id).owner == "sam"
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        get_run(rita.api, approvals["pr_run"].run_id)
    with rpc_error(DENIED, "NOT_YOUR_RUN"):
        get_run(rita.api, sams_tiny.run_id)
    assert {r.graph for r in list_all_runs(rita.api)} == {"approval_workflow"}


def test_reviewer_watches_only_covered_approvals(who, approvals):
    rita = who["rita"]
    with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
        list(rita.review.WatchApprovals(rpb.WatchApprovalsRequest(graph="parallel_review"), timeout=10))
    seen = []
    call = rita.review.WatchApprovals(rpb.WatchApprovalsRequest(include_pending=True), timeout=3)
    try:
        for response in call:
            seen.append(response.event)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err
    assert approvals["aw"].approval_id in {e.approval.approval_id for e in seen}
    assert {e.approval.graph for e in seen} == {"approval_workflow"}


def test_reviewer_cannot_decide_uncovered_graph(who, approvals):
    rita = who["rita"]
    for key in ("finance", "legal"):
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            rita.review.Decide(rpb.DecideRequest(approval_id=approvals[key].approval_id, kind=APPROVE), timeout=10)


def test_decide_needs_the_required_role(who, approvals):
    fin = who["fin"]
    with rpc_error(DENIED, "ROLE_REQUIRED") as err:
        fin.review.Decide(rpb.DecideRequest(approval_id=approvals["legal"].approval_id, kind=APPROVE), timeout=10)
    assert "legal" in err["details"]
    decided = fin.review.Decide(rpb.DecideRequest(approval_id=approvals["finance"].approval_id, kind=APPROVE,
                                                  comment="within budget"),
                                metadata=[("gm-principal", "mallory")], timeout=30).approval
    assert decided.status == rpb.APPROVAL_STATUS_APPROVED and decided.decision.reviewer == "fin"
    legal = fin.review.GetApproval(rpb.GetApprovalRequest(approval_id=approvals["legal"].approval_id),
                                   timeout=10).approval
    assert legal.status == PENDING  # the refused decision changed nothing
    # An admin holds every role: it decides the legal one, and the run finishes.
    who["ada"].review.Decide(rpb.DecideRequest(approval_id=approvals["legal"].approval_id, kind=APPROVE),
                             timeout=30)
    wait_status(who["sam"].api, approvals["pr_run"].run_id, COMPLETED)


def test_recorded_reviewer_is_the_authenticated_one(who, approvals):
    rita, sam = who["rita"], who["sam"]
    aw_run = approvals["aw_run"]
    request = rpb.DecideRequest(approval_id=approvals["aw"].approval_id, kind=APPROVE, comment="ok")
    decided = rita.review.Decide(request, metadata=[("gm-principal", "mallory")], timeout=30).approval
    assert decided.decision.reviewer == "rita"
    done = wait_status(sam.api, aw_run.run_id, COMPLETED)
    assert done.status == COMPLETED
    values = to_dict(sam.api.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=aw_run.thread_id),
                                                 timeout=10).values)
    assert values["reviewer"] == "rita" and values["applied"] is True
    records = rita.review.ListAuditRecords(rpb.ListAuditRecordsRequest(run_id=aw_run.run_id), timeout=10).records
    decisions = [r for r in records if r.action == "approval_decided"]
    assert [r.actor for r in decisions] == ["rita"], [(r.action, r.actor) for r in records]
    assert "mallory" not in str([to_dict(r) for r in records])
    events = stream_events(sam.api, aw_run.run_id)
    assert [e.approval_decided.reviewer for e in events if e.WhichOneof("kind") == "approval_decided"] == ["rita"]
    # A narrowed reviewer reads the audit trail one run at a time.
    with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
        rita.review.ListAuditRecords(rpb.ListAuditRecordsRequest(), timeout=10)
    with rpc_error(DENIED):
        rita.review.ListAuditRecords(rpb.ListAuditRecordsRequest(run_id=approvals["pr_run"].run_id), timeout=10)


# -- operators -----------------------------------------------------------------------------

def test_operator_cancels_resumes_and_retries_covered_runs(who):
    olga, sam = who["olga"], who["sam"]
    graph = olga.api.graphs.DisableNode(gpb.DisableNodeRequest(graph="tiny", node="count", reason="maintenance"),
                                        metadata=[("gm-principal", "mallory")], timeout=10).graph
    try:
        assert [(d.node, d.disabled_by) for d in graph.disabled_nodes] == [("count", "olga")]
        first = create_run(sam.api, "tiny", {"text": "to cancel"})
        second = create_run(sam.api, "tiny", {"text": "to resume"})
        wait_status(sam.api, first.run_id, PAUSED)
        wait_status(sam.api, second.run_id, PAUSED)
        cancelled = olga.api.runs.CancelRun(pb.CancelRunRequest(run_id=first.run_id, reason="not needed"),
                                            timeout=30).run
        assert cancelled.status == CANCELLED
    finally:
        olga.api.graphs.EnableNode(gpb.EnableNodeRequest(graph="tiny", node="count"), timeout=10)
    olga.api.runs.ResumeRun(pb.ResumeRunRequest(run_id=second.run_id), timeout=10)
    wait_status(sam.api, second.run_id, COMPLETED)
    retried = olga.api.runs.RetryRun(pb.RetryRunRequest(run_id=first.run_id), timeout=10).run
    assert retried.attempt == 2
    wait_status(sam.api, first.run_id, COMPLETED)


def test_operator_is_refused_other_graphs(who):
    olga, sam, ada = who["olga"], who["sam"], who["ada"]
    research = create_run(sam.api, "research_assistant", {"question": "what are checkpoints?"})
    try:
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            olga.api.runs.CancelRun(pb.CancelRunRequest(run_id=research.run_id), timeout=10)
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            olga.api.runs.RetryRun(pb.RetryRunRequest(run_id=research.run_id), timeout=10)
        with rpc_error(DENIED, "NOT_YOUR_RUN"):
            get_run(olga.api, research.run_id)
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            olga.api.graphs.SetRollout(gpb.SetRolloutRequest(graph="research_assistant", weights={"1": 50, "2": 50},
                                                             reason="canary"), timeout=10)
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            olga.api.graphs.RollbackGraph(gpb.RollbackGraphRequest(graph="research_assistant", reason="r"),
                                          timeout=10)
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            olga.api.graphs.DisableNode(gpb.DisableNodeRequest(graph="research_assistant", node="search",
                                                               reason="r"), timeout=10)
        with rpc_error(DENIED, "GRAPH_NOT_COVERED"):
            create_run(olga.api, "research_assistant", {"question": "q"})
        weights = {v.versions.graph_version: v.weight for v in
                   ada.api.graphs.GetGraph(gpb.GetGraphRequest(graph="research_assistant"), timeout=10).graph.versions}
        assert weights == {"1": 100, "2": 0}  # the refused rollout changed nothing
        # What olga covers she operates.
        tiny = olga.api.graphs.SetRollout(gpb.SetRolloutRequest(graph="tiny", weights={"1": 100}, reason="pin"),
                                          timeout=10).graph
        assert [v.weight for v in tiny.versions] == [100]
        assert olga.api.graphs.ListWorkers(gpb.ListWorkersRequest(), timeout=10).workers
        assert olga.worker.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10).worker_id == "worker-1"
    finally:
        try:
            ada.api.runs.CancelRun(pb.CancelRunRequest(run_id=research.run_id, reason="cleanup"), timeout=30)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err  # it had finished already


# -- threads belong to their owner ---------------------------------------------------------

def test_other_submitter_cannot_continue_a_thread(who):
    sam, sue = who["sam"], who["sue"]
    run = create_run(sam.api, "tiny", {"text": "sam's own words"}, thread_id=new_thread("sam"))
    wait_status(sam.api, run.run_id, COMPLETED)
    with rpc_error(DENIED, "NOT_YOUR_THREAD"):
        create_run(sue.api, "tiny", {"text": "continuing sam's thread"}, thread_id=run.thread_id)


def test_other_submitter_cannot_interrupt_or_roll_back_a_run(who):
    sam, sue, ada = who["sam"], who["sue"], who["ada"]
    victim = create_run(sam.api, "approval_workflow", APPROVAL_INPUT, thread_id=new_thread("victim"))
    wait_status(sam.api, victim.run_id, WAITING)
    try:
        for strategy in (run_pb2.MULTITASK_STRATEGY_INTERRUPT, run_pb2.MULTITASK_STRATEGY_ROLLBACK):
            with rpc_error(DENIED, "NOT_YOUR_THREAD"):
                create_run(sue.api, "approval_workflow", APPROVAL_INPUT, thread_id=victim.thread_id,
                           multitask_strategy=strategy)
        assert get_run(sam.api, victim.run_id).status == WAITING
    finally:
        for r in list_all_runs(ada.api, thread_id=victim.thread_id):
            if r.status not in (COMPLETED, CANCELLED, run_pb2.RUN_STATUS_FAILED):
                ada.api.runs.CancelRun(pb.CancelRunRequest(run_id=r.run_id, reason="cleanup"), timeout=30)


# -- admins and tokens ---------------------------------------------------------------------

def test_only_admins_manage_tokens(who):
    for name in ("sam", "rita", "fin", "olga"):
        c = who[name]
        with rpc_error(DENIED, "ROLE_REQUIRED"):
            c.auth.CreateToken(apb.CreateTokenRequest(principal=name, roles=["admin"]), timeout=10)
        with rpc_error(DENIED, "ROLE_REQUIRED"):
            c.auth.ListTokens(apb.ListTokensRequest(), timeout=10)
        with rpc_error(DENIED, "ROLE_REQUIRED"):
            c.auth.RevokeToken(apb.RevokeTokenRequest(token_id=who["ada"].token_id), timeout=10)
    # ada's token still works: nobody revoked it.
    assert who["ada"].auth.WhoAmI(apb.WhoAmIRequest(), timeout=10).principal == "ada"


def test_admin_token_lifecycle(amesh, who, minted):
    ada = who["ada"]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ROLES"):
        ada.auth.CreateToken(apb.CreateTokenRequest(principal="tmp", roles=["superuser"]), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PRINCIPAL"):
        ada.auth.CreateToken(apb.CreateTokenRequest(principal="", roles=["submitter"]), timeout=10)
    created = ada.auth.CreateToken(apb.CreateTokenRequest(principal="tmp", roles=["submitter", "reviewer"],
                                                          graphs=["tiny"]),
                                   metadata=[("gm-principal", "mallory")], timeout=10)
    assert created.token.startswith(f"gm_{created.token_id}_")
    minted.append(created.token)
    tmp = make_caller(amesh, "tmp", created.token, created.token_id)
    try:
        me = tmp.auth.WhoAmI(apb.WhoAmIRequest(), timeout=10)
        assert (me.principal, list(me.roles), list(me.graphs), me.authenticated_by) == \
            ("tmp", ["reviewer", "submitter"], ["tiny"], f"token:{created.token_id}")
        tmp.review.ListApprovals(rpb.ListApprovalsRequest(), timeout=10)  # the review tier caches it now

        listing = ada.auth.ListTokens(apb.ListTokensRequest(), timeout=10)
        info = {t.token_id: t for t in listing.tokens}[created.token_id]
        assert (info.principal, list(info.roles), list(info.graphs), info.created_by) == \
            ("tmp", ["submitter", "reviewer"], ["tiny"], "ada")
        assert not info.HasField("revoked_at")
        assert {who[n].token_id for n in GRANTS} <= set(info_id for info_id in {t.token_id for t in listing.tokens})
        raw = listing.SerializeToString()
        for token in minted:
            assert token.encode() not in raw
            assert hashlib.sha256(token.encode()).hexdigest().encode() not in raw
            assert token.split("_", 2)[2].encode() not in raw  # not even the secret part

        ada.auth.RevokeToken(apb.RevokeTokenRequest(token_id=created.token_id), timeout=10)
        # Every process caches token lookups for up to 10 s.
        wait_for(lambda: _unauthenticated(lambda: tmp.auth.WhoAmI(apb.WhoAmIRequest(), timeout=10)),
                 20, interval=0.5, message="the revoked token to stop working on the api")
        wait_for(lambda: _unauthenticated(lambda: tmp.review.ListApprovals(rpb.ListApprovalsRequest(), timeout=10)),
                 20, interval=0.5, message="the revoked token to stop working on the review tier")
        wait_for(lambda: _unauthenticated(lambda: tmp.worker.GetWorkerStatus(wpb.GetWorkerStatusRequest(),
                                                                             timeout=10)),
                 20, interval=0.5, message="the revoked token to stop working on the worker")
        with rpc_error(UNAUTHENTICATED):
            create_run(tmp.api, "tiny", {"text": "after revocation"})
        revoked = {t.token_id: t for t in ada.auth.ListTokens(apb.ListTokensRequest(), timeout=10).tokens}
        assert revoked[created.token_id].HasField("revoked_at")
        with rpc_error(grpc.StatusCode.NOT_FOUND):
            ada.auth.RevokeToken(apb.RevokeTokenRequest(token_id=created.token_id), timeout=10)
        assert not amesh.token_is_active(created.token)
        # Everyone else is unaffected.
        assert who["sam"].auth.WhoAmI(apb.WhoAmIRequest(), timeout=10).principal == "sam"
    finally:
        tmp.close()


def _unauthenticated(call) -> bool:
    try:
        call()
    except grpc.RpcError as err:
        if err.code() == UNAUTHENTICATED:
            return True
        raise
    return False


def test_database_keeps_no_plain_token(amesh, who, minted):
    with psycopg.connect(amesh.database_url) as conn:
        rows = conn.execute("SELECT * FROM gm_api_tokens").fetchall()
        columns = [d.name for d in conn.execute("SELECT * FROM gm_api_tokens LIMIT 0").description]
    dump = repr(rows)
    assert len(rows) >= len(minted)
    for token in minted:
        assert token not in dump
        assert token.split("_", 2)[2] not in dump
    hashes = {row[columns.index("token_hash")] for row in rows}
    for c in who.values():
        assert hashlib.sha256(c.token.encode()).hexdigest() in hashes


# -- refused calls never reach the handlers, whatever they carry ---------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# Well-formed wire format: fields 1-9 as varints (any 64-bit value, negative included) or
# length-delimited UTF-8, which requests parse (unknown or mismatched fields are kept aside).
_wire_field = st.one_of(
    st.builds(lambda f, v: _varint(f << 3) + _varint(v), st.integers(1, 9), st.integers(-(2 ** 63), 2 ** 64 - 1)),
    st.builds(lambda f, t: _varint(f << 3 | 2) + _varint(len(t.encode())) + t.encode(), st.integers(1, 9),
              st.text(max_size=60)),
)
_well_formed = st.lists(_wire_field, max_size=6).map(b"".join)
_credentials = st.one_of(
    st.just([]),
    st.builds(lambda v: [("authorization", v)],
              st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=80)),
    st.builds(lambda v: [("authorization", f"Bearer {v}")],
              st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=80)),
    st.builds(lambda v: [("authorization", f"Bearer gm_{v}")],
              st.text("0123456789abcdef_", min_size=1, max_size=60)),
    st.builds(lambda v: [("authorization", f"Bearer {v}")],
              st.lists(st.text("abcXYZ019-_", max_size=20), min_size=3, max_size=3).map(".".join)),
    st.builds(lambda name: [("gm-principal", name)], st.sampled_from(["ada", "admin", "olga", ""])),
)


def _request_class(path: str):
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(_all_rpcs()[path].input_type)


def _parses(path: str, body: bytes) -> bool:
    try:
        _request_class(path).FromString(body)
    except Exception:
        return False
    return True


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(path=st.sampled_from(sorted(_all_rpcs())), body=_well_formed, metadata=_credentials)
def test_fuzz_without_credentials_is_unauthenticated(amesh, path, body, metadata):
    """Any method, any well-formed request, any bad credential: UNAUTHENTICATED, and so
    nothing runs (WorkerService/Drain included)."""
    assume(_parses(path, body))
    streaming = _all_rpcs()[path].server_streaming
    code, gm_code, details = _raw_call(amesh, path, body, metadata, streaming=streaming, timeout=5)
    assert code == UNAUTHENTICATED, f"{path} with {metadata} and body {body!r}: {code.name} {gm_code} {details}"


MALFORMED = [b"\x00", b"\x0f", b"\x0a\x05ab", b"\x0a\xff\xff\xff\xff\x0f", b"\xff" * 11]

def test_malformed_request_without_credentials_is_unauthenticated(amesh):
    wrong = []
    for path, method in sorted(_all_rpcs().items()):
        for body in MALFORMED:
            assert not _parses(path, body), (path, body)
            code, gm_code, details = _raw_call(amesh, path, body, [], streaming=method.server_streaming, timeout=5)
            if code != UNAUTHENTICATED:
                wrong.append(f"{path} {body!r}: {code.name} {details}")
    assert not wrong, "\n".join(wrong)


# -- last: an admitted Drain would drain the module's only worker --------------------------

def test_drain_is_refused_to_non_operators(who):
    for name in ("sam", "sue", "rita", "fin"):
        with rpc_error(DENIED, "ROLE_REQUIRED"):
            who[name].worker.Drain(wpb.DrainRequest(grace_seconds=1), timeout=10)
    status = who["olga"].worker.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10)
    assert not status.draining
    run = create_run(who["sam"].api, "tiny", {"text": "still working"})
    wait_status(who["sam"].api, run.run_id, COMPLETED)
