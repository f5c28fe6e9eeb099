"""Helpers for the integration tests: polling with a deadline, run creation and event reading.

No fixed sleeps: everything that waits polls a predicate until a deadline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from graphmesh.mesh import Mesh, MeshConfig
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb

T = TypeVar("T")

QUEUED = run_pb2.RUN_STATUS_QUEUED
RUNNING = run_pb2.RUN_STATUS_RUNNING
WAITING = run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL
COMPLETED = run_pb2.RUN_STATUS_COMPLETED
FAILED = run_pb2.RUN_STATUS_FAILED
CANCELLED = run_pb2.RUN_STATUS_CANCELLED
# Statuses a run rests in: no worker is executing it.
RESTING = {WAITING, COMPLETED, FAILED, CANCELLED, run_pb2.RUN_STATUS_PAUSED}
TERMINAL = {COMPLETED, FAILED, CANCELLED}

# Generous deadlines: they bound a hung test, they are not timing assertions.
RUN_TIMEOUT = 60.0


class WaitTimeout(AssertionError):
    pass


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, *, interval: float = 0.05,
             message: str | Callable[[], str] = "condition") -> T:
    """Polls `predicate` until it returns something truthy; returns that value.
    Fails the test with `message` (and the last value) if `timeout` passes first."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout}s waiting for {text}; last value: {last!r}")
        time.sleep(interval)


def new_thread(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def to_dict(message) -> Any:
    return json_format.MessageToDict(message)


def status_name(value: int) -> str:
    return run_pb2.RunStatus.Name(value)


def create_run(client, graph: str, inputs: dict | None = None, **fields) -> run_pb2.Run:
    request = pb.CreateRunRequest(graph=graph, input=struct(inputs or {}), **fields)
    return client.runs.CreateRun(request, timeout=30).run


def get_run(client, run_id: str) -> run_pb2.Run:
    return client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run


def wait_status(client, run_id: str, statuses: set[int] | int, timeout: float = RUN_TIMEOUT) -> run_pb2.Run:
    wanted = {statuses} if isinstance(statuses, int) else set(statuses)
    last: list[run_pb2.Run] = []

    def check():
        run = get_run(client, run_id)
        last[:] = [run]
        return run if run.status in wanted else None

    return wait_for(check, timeout, interval=0.05, message=lambda: (
        f"run {run_id} to reach {sorted(status_name(s) for s in wanted)} "
        f"(now {status_name(last[0].status) if last else '?'}, error {last[0].error if last else ''})"))


def wait_resting(client, run_id: str, timeout: float = RUN_TIMEOUT) -> run_pb2.Run:
    return wait_status(client, run_id, RESTING, timeout)


def stream_events(client, run_id: str, after: int = 0, *, limit: int | None = None,
                  timeout: float = RUN_TIMEOUT) -> list[run_pb2.RunEvent]:
    """Reads StreamRun until it ends (or `limit` events were read, then disconnects)."""
    call = client.runs.StreamRun(pb.StreamRunRequest(run_id=run_id, after_sequence=after), timeout=timeout)
    events: list[run_pb2.RunEvent] = []
    try:
        for response in call:
            events.append(response.event)
            if limit is not None and len(events) >= limit:
                break
    finally:
        call.cancel()
    return events


def kinds(events: list[run_pb2.RunEvent]) -> list[str]:
    return [e.WhichOneof("kind") for e in events]


def statuses_of(events: list[run_pb2.RunEvent]) -> list[str]:
    return [status_name(e.status_changed.status) for e in events if e.WhichOneof("kind") == "status_changed"]


def list_all_runs(client, page_size: int = 50, **filters) -> list[run_pb2.Run]:
    """Follows page tokens to the end."""
    runs: list[run_pb2.Run] = []
    token = ""
    for _ in range(10_000):
        response = client.runs.ListRuns(pb.ListRunsRequest(page_size=page_size, page_token=token, **filters),
                                        timeout=10)
        runs.extend(response.runs)
        token = response.next_page_token
        if not token:
            return runs
    raise AssertionError("ListRuns never returned an empty next_page_token")


@contextmanager
def rpc_error(code: grpc.StatusCode, gm_code: str | None = None) -> Iterator[dict]:
    """Expects the block to fail with `code` (and graphmesh error code `gm_code`); yields a dict
    filled with the error's details and codes for further assertions."""
    info: dict = {}
    with pytest.raises(grpc.RpcError) as caught:
        yield info
    err = caught.value
    info.update(code=err.code(), details=err.details() or "", gm_code=error_code(err), error=err)
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
    if gm_code is not None:
        assert info["gm_code"] == gm_code, f"expected error code {gm_code}, got {info['gm_code']}: {err.details()}"


def assert_gap_free(events: list[run_pb2.RunEvent], first: int = 1) -> None:
    seqs = [e.sequence for e in events]
    assert seqs == list(range(first, first + len(events))), f"sequences not gap-free from {first}: {seqs}"


def event_summary(events: list[run_pb2.RunEvent]) -> list[str]:
    """Compact description for assertion messages."""
    out = []
    for e in events:
        kind = e.WhichOneof("kind")
        body = getattr(e, kind)
        detail = status_name(body.status) if kind == "status_changed" else getattr(body, "node", "")
        out.append(f"{e.sequence}:{kind}:{detail}")
    return out


@contextmanager
def private_mesh(name: str, **config: Any) -> Iterator[Mesh]:
    """A mesh of a test module's own, for tests that stop backends or need other settings."""
    root = tempfile.mkdtemp(prefix=f"graphmesh-{name}-")
    # Development auth unless a test asks for tokens: callers name themselves (gm-principal).
    config.setdefault("auth", "none")
    mesh = Mesh(MeshConfig(data_dir=root, api_port=0, review_port=0, worker_base_port=0,
                           fast_postgres=True, **config))
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()
        if os.environ.get("GRAPHMESH_TEST_KEEP"):  # debugging: keep the mesh's logs and data
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# -- review tier (approvals) --------------------------------------------------------------

REVIEWER_KEY = "gm-principal"


def as_reviewer(name: str) -> list[tuple[str, str]]:
    """gRPC metadata naming the caller (meshes with development auth, GRAPHMESH_AUTH=none)."""
    return [(REVIEWER_KEY, name)]


def decide(review, approval_id: str, kind: str = "approve", *, reviewer: str = "alice", comment: str = "",
           edited: dict | None = None):
    """Decide(approval_id, APPROVE|REJECT|EDIT) as `reviewer`; returns the recorded approval."""
    from graphmesh.v1 import review_service_pb2 as rpb

    request = rpb.DecideRequest(approval_id=approval_id, kind=rpb.DecisionKind.Value(f"DECISION_KIND_{kind.upper()}"),
                                comment=comment)
    if edited is not None:
        request.edited_value.CopyFrom(struct(edited))
    return review.Decide(request, metadata=as_reviewer(reviewer), timeout=30).approval


def list_approvals(review, page_size: int = 50, **filters) -> list:
    """ListApprovals, following page tokens to the end."""
    from graphmesh.v1 import review_service_pb2 as rpb

    approvals, token = [], ""
    for _ in range(10_000):
        response = review.ListApprovals(rpb.ListApprovalsRequest(page_size=page_size, page_token=token, **filters),
                                        timeout=10)
        approvals.extend(response.approvals)
        token = response.next_page_token
        if not token:
            return approvals
    raise AssertionError("ListApprovals never returned an empty next_page_token")


def wait_approvals(review, run_id: str, count: int, status: int | None = None, timeout: float = RUN_TIMEOUT) -> list:
    """Polls until the run has `count` approvals (all in `status`, when given); oldest first."""
    def check():
        found = list_approvals(review, run_id=run_id)
        if len(found) == count and (status is None or all(a.status == status for a in found)):
            return sorted(found, key=lambda a: (a.created_at.ToDatetime(), a.approval_id))
        return None

    return wait_for(check, timeout, message=f"{count} approvals of run {run_id}")


def thread_values(client, thread_id: str) -> dict:
    return to_dict(client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10).values)


def list_audit(review, page_size: int = 100, **filters) -> list:
    """ListAuditRecords, following page tokens to the end."""
    records, token = [], ""
    for _ in range(10_000):
        response = review.ListAuditRecords(
            rpb.ListAuditRecordsRequest(page_size=page_size, page_token=token, **filters), timeout=10)
        records.extend(response.records)
        token = response.next_page_token
        if not token:
            return records
    raise AssertionError("ListAuditRecords never returned an empty next_page_token")
